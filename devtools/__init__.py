"""Test and benchmark helpers: used by tests/ and scripts/, never by the babelfish package, and not
shipped in its wheel. Importable from a checkout set up with `scripts/setup.sh --dev` (a .pth in
the venv) and in pytest (pythonpath = ["."])."""
