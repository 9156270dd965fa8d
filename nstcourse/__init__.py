"""nstcourse: the helper package of a Jupyter course on neural image transformation.

Plumbing modules: ``images``, ``runmode``, ``weights``, ``features``, ``losses``,
``data``, ``download``, ``files``, ``plotting``, ``runner``, ``cli``. Import what you
use explicitly, e.g. ``from nstcourse.features import VGGFeatures``.
"""

__version__ = "0.1.0"
