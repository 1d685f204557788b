"""The canonical dataset layer: schema, importers (``llm_emf.data.importers``), validation and statistics."""
