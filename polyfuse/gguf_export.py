"""A trained student's weights as a GGUF file llama.cpp loads: the base GGUF's metadata with the new weights.

Runs in the train environment (envs/train.yaml), imported by `polyfuse.finetune` when it exports a student.
"""

from __future__ import annotations

from pathlib import Path

from polyfuse.errors import PolyfuseError

GGUF_TYPES = ("q8_0", "f32")
Q8_0_BLOCK = 32  # values per Q8_0 block: a matrix whose rows are not a multiple of it stays F32


def permute_for_gguf(weights, n_head: int):
    """HF's rotary layout of a Q/K projection to llama.cpp's (interleaved pairs per head): the inverse of
    transformers' `LlamaTensorProcessor._reverse_permute_weights`, i.e. llama.cpp convert_hf_to_gguf's permute."""
    head_dim = weights.shape[0] // n_head
    return weights.reshape(n_head, 2, head_dim // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def export_gguf(model, base_gguf: Path, out: Path, gguf_type: str = "f32") -> None:
    """Write `model`'s weights as a llama-architecture GGUF with every key/value (tokenizer, chat template,
    hyper-parameters) copied from `base_gguf`.

    Our own writer rather than llama.cpp's convert_hf_to_gguf.py: that script is not part of any pip package, and a
    student only needs its base's metadata with new weights. Matrices are Q8_0 (`gguf_type: q8_0`: 4x smaller than
    F32 and faster in llama.cpp) or F32 (exactly the merged weights); vectors (norms) stay F32. Never F16: the pip
    build of llama.cpp is portable (no F16C/AVX2 kernels), where F16 matrices generate ~40x slower (measured 1.4 s vs
    35 ms per token for SmolLM2-135M on 2 cores; Q8_0: 16 ms).
    """
    import gguf
    import torch

    reader = gguf.GGUFReader(base_gguf)
    architecture = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    if architecture != "llama":
        raise PolyfuseError(f"{base_gguf}: GGUF export writes the llama architecture, not {architecture!r}")
    config = model.config
    n_head, n_kv_head = config.num_attention_heads, config.num_key_value_heads
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    writer = gguf.GGUFWriter(out, architecture)
    replaced = (gguf.Keys.General.ARCHITECTURE, gguf.Keys.General.FILE_TYPE)
    for field in reader.fields.values():
        # GGUF.* are the reader's virtual header fields; the writer sets the architecture, the file type is new.
        if field.name.startswith("GGUF.") or field.name in replaced:
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    quantize = gguf_type == "q8_0"
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quantize else gguf.LlamaFileType.ALL_F32)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied to token_embd, as in the base GGUF
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise PolyfuseError(f"{base_gguf}: no GGUF name for the model's tensor {hf_name!r}")
        weights = tensor.detach().to(torch.float32).cpu().numpy()
        if gguf_name.endswith("attn_q.weight"):
            weights = permute_for_gguf(weights, n_head)
        elif gguf_name.endswith("attn_k.weight"):
            weights = permute_for_gguf(weights, n_kv_head)
        if quantize and weights.ndim == 2 and weights.shape[-1] % Q8_0_BLOCK == 0:
            q8_0 = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(gguf_name, gguf.quants.quantize(weights, q8_0), raw_dtype=q8_0)
        else:
            writer.add_tensor(gguf_name, weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()
