"""Which model folders are embedding models (vectors), not chat models (answers).

Read from the folder alone, before anything loads: its ``model_type``, named
as mlx-vlm's embedding loader names it, is one of mlx-vlm's embedding
families. Four chat families (Qwen3, Gemma 3, LFM2, Ministral 3) are also
embedders when their folder is a sentence-transformers one (Qwen3-Embedding,
EmbeddingGemma…): mlx-vlm's loader renames them, and the folder's
``modules.json`` or ``1_Pooling/config.json`` says which they are.
"""

from __future__ import annotations

from pathlib import Path

#: mlx-vlm's embedding families (``mlx_vlm/models/*`` whose model returns one
#: ``EmbeddingOutput`` vector per item; pinned by a test against its source).
#: The ColBERT-style ones (a vector per token) are left out.
EMBEDDING_MODEL_TYPES = frozenset(
    {
        "bert",
        "embedding_gemma2",
        "gemma3_embedding",
        "lfm2_embedding",
        "llama_bidirec",
        "llama_nemotron_vl_embedding",
        "ministral3_embedding",
        "modernbert",
        "qwen3_embedding",
        "qwen3_vl_embedding",
        "siglip",
        "xlm_roberta",
    }
)
#: ``mlx_vlm.embedding_loader.EMBEDDING_MODEL_REMAPPING`` (pinned by a test):
#: the names a folder's config.json gives the families above.
RENAMED = {
    "qwen3": "qwen3_embedding",
    "gemma3_text": "gemma3_embedding",
    "lfm2": "lfm2_embedding",
    "ministral3": "ministral3_embedding",
    "xlm-roberta": "xlm_roberta",
}
#: Chat families that are embedders only in a sentence-transformers folder.
_ALSO_CHAT = frozenset({"qwen3", "gemma3_text", "lfm2", "ministral3"})
#: The files that make a folder a sentence-transformers model.
SENTENCE_TRANSFORMERS_FILES = (
    "modules.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)


def is_embedder(folder: Path, config: dict) -> bool:
    """Whether the model in ``folder`` (its parsed ``config``) gives vectors."""
    model_type = str(config.get("model_type", "")).lower()
    if model_type in _ALSO_CHAT:
        return any((folder / name).is_file() for name in SENTENCE_TRANSFORMERS_FILES)
    return RENAMED.get(model_type, model_type) in EMBEDDING_MODEL_TYPES
