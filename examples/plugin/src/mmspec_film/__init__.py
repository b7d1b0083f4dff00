"""mmspec-film: FiLM fusion for mmspec, registered through the `mmspec.components` entry point."""
