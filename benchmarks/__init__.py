"""``python -m benchmarks``: what serving AW-Net costs, measured against baselines in one run.

One job per module (docs/benchmark.md tells the whole method):

* ``baselines``: the models the AW-Net graph is compared with (static export, plain
  backbone), built once from the checkpoint and cached; graph facts from the ONNX files;
* ``build_plain``: the subprocess that exports the router-free backbone (torch lives there);
* ``graph_compare`` / ``build_graphs``: ``--graph-compare``, the AW-Net graph (folded, and
  unfolded) against the plain backbone alone, e.g. ResNet-18 at random init;
* ``sessions``: ONNX Runtime sessions like the service's, CPU or CUDA (IO binding);
* ``inprocess``: per-call latency and throughput of the sessions at batch sizes (and
  PyTorch eager);
* ``memory``: peak RSS of a fresh process per model, and the service's RSS over N requests;
* ``wrk``: HTTP load from ``wrk`` (binary v2 bodies through a Lua script) and its parsing;
* ``servers``: the service (``python -m service``) and PyTriton, started and stopped;
* ``triton_server``: the PyTriton program itself (runs in ``.venv-triton``);
* ``http``: the load scenarios against each server; ``profile``: py-spy under load;
* ``report``: tables with ratios, targets, JSON, docs/benchmark.md between markers;
  ``plots``: the figures (matplotlib);
* ``cli``: options, ``--quick``, and the order of the run.

Imports here stay light: ``triton_server`` runs in a venv with only numpy, onnxruntime and
pytriton.
"""
