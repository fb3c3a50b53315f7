"""``quant-assets demo`` and the console script: simulate every vendor, launch every domain's
runs against the workspace's code location, print what was built.

- ``cli`` -- the ``quant-assets`` console script (``demo``, ``simulate``, ``dev``);
- ``run`` -- the demo's driver and its summary table;
- ``launch`` -- runs launched against the workspace's code location, as the UI would;
- ``market``, ``research``, ``client_intel``, ``smart_money``, ``pump`` -- each domain's steps
  (its simulated inputs, its runs in order, the figures it reports).

Nothing under ``quant_assets/defs``, ``lib`` or ``execution`` imports this package.
"""
