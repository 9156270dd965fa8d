"""Settings for every pytest run, notebooks included (their kernels inherit os.environ).

Notebooks collected by nbval cannot get papermill parameters, so the smoke budget is
chosen through NSTCOURSE_MODE, unless the caller already set it.
"""

import os

os.environ.setdefault("NSTCOURSE_MODE", "smoke")
