"""What the user sees: the event collector, the token buffer, the views
(cell stream, terminal, widgets), previews, probabilities, the chat panel and
the result stored in ``_mlx``. Imports no MLX.
"""
