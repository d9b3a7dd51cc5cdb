"""Root conftest: ``convcore/torch.py`` (doctest-collected with the package) needs torch."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("torch") else ["convcore/torch.py"]
