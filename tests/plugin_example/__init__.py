"""Source of the example third-party plugin used by ``tests/test_plugins.py``.

The tests copy ``convcore_example_plugin/`` and ``convcore_example_unavailable.py``
into a temporary directory next to a ``.dist-info`` with an ``entry_points.txt``,
which is how an installed third-party plugin looks to convcore.

This ``__init__.py`` only keeps pytest's ``--doctest-modules`` collection from
putting this directory on ``sys.path`` (it imports the modules as
``plugin_example.*`` instead), so ``import convcore_example_plugin`` works only
where a test installed the plugin.
"""
