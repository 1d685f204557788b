"""llm-emf: LLM-enhanced multimodal fusion for cross-domain sequential recommendation, on Ray."""

__version__ = "0.1.0"
