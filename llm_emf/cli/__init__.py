"""The ``llm-emf`` command line: one module per subcommand, registered in :mod:`llm_emf.cli.main`."""
