"""Images for ``%%mlx_vision``: where they come from, the cache of decoded images,
and their encodings. Imports no MLX.

The names below are the package's interface: the magics and the display import
them from here, whichever module inside defines them.
"""

from mlx_magic.errors import ImageSourceError
from mlx_magic.images.cache import DecodedImageCache
from mlx_magic.images.decoding import LoadedImage
from mlx_magic.images.encoding import png_bytes, thumbnail
from mlx_magic.images.sources import load_images

__all__ = [
    "DecodedImageCache",
    "ImageSourceError",
    "LoadedImage",
    "load_images",
    "png_bytes",
    "thumbnail",
]
