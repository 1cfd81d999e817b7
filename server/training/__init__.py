"""Datasets, recipes, quantization and training jobs: where models come from.

Nothing here imports TensorFlow at import time; the modules that train or
convert (``recipes``, ``quantize``, ``keras_files.load_keras``) import it
lazily, and only worker processes call them.
"""
