"""Benchmarks: generated code against hand-written code, policy overhead, compiler scaling.

Run ``python -m benchmarks`` (``make bench``); see ``python -m benchmarks --help``. Results go to
``benchmarks/results/`` (``RESULTS.md``, ``results.json``, ``chart.png``) or ``--out``.

Modules:

* :mod:`benchmarks.run`: the entry point; compiles and generates, starts the workers, writes the
  report. Imports no deep-learning framework.
* :mod:`benchmarks.worker`: one backend's measurements, in a subprocess.
* :mod:`benchmarks.frameworks`: the training step shared by generated and hand-written models.
* :mod:`benchmarks.handwritten`: the idiomatic baselines, one module per framework.
* :mod:`benchmarks.specs`: the example specs (shrunk by ``--quick``) and the policy specs.
* :mod:`benchmarks.compiler`: compiler scaling and CLI wall time.
* :mod:`benchmarks.gpu`: peak memory bandwidth and bytes moved per step.
* :mod:`benchmarks.report`: machine information and the markdown report.
* :mod:`benchmarks.chart`: the PNG chart of the ratios.
"""
