"""A stage on another machine: the pipeline's proxy, the stage server, their CURVE security."""
