"""What the user sees: the event collector, the views
(cell stream, terminal, widgets), previews, probabilities, memory figures and
the result stored in ``_mlx``. Imports no MLX.
"""
