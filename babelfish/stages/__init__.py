"""Pipeline stages. Each runs as its own process:
`python -m babelfish.stages.<name> --runtime DIR`."""
