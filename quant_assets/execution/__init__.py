"""How runs execute: the executor of every job (multiprocess, in_process, Dask or Kubernetes per
step), the preflight a distributed run passes before any step, and the run launcher with a
worker health check. Nothing here imports the asset code: the definitions import the executor."""
