"""Golden outputs of HF transformers (+ PEFT) for a tiny Qwen3-VL or Qwen2.5-VL made by
`clawdesk model tiny [--arch qwen2.5-vl]`.

The Rust parity tests regenerate the same tiny model and adapter from their seeds and compare
against the files written here (CI has no torch). Run through `scripts/hf/make-goldens.sh`.
"""

import argparse
import hashlib
import json
import pathlib

import numpy as np
import peft
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor

torch.set_grad_enabled(False)

# Tokens appended one at a time after the prompt to check prefill + decode ("Hello" + <|im_end|>).
CONTINUATION = [72, 101, 108, 108, 111, 258]


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def make_images(out):
    """Deterministic test pictures: gradients with sharp edges, so resampling differences show."""
    rng = np.random.default_rng(11)
    specs = {"small.png": (75, 100), "wide.png": (120, 250), "large.png": (260, 300)}
    paths = {}
    for name, (h, w) in specs.items():
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack(
            [(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x // 7 + y // 5) % 2) * 255],
            axis=-1,
        ).astype(np.int32)
        # A little noise in a corner only: enough to exercise rounding, small as a PNG.
        img[: h // 4, : w // 4] += rng.integers(-20, 21, size=(h // 4, w // 4, 3))
        img = np.clip(img, 0, 255).astype(np.uint8)
        path = out / name
        Image.fromarray(img, "RGB").save(path)
        paths[name] = path
    return paths


def cases(tool):
    return {
        "text": (
            [
                {"role": "system", "content": "You operate a desktop."},
                {"role": "user", "content": "Open the settings, then say done."},
            ],
            [tool],
            [],
        ),
        "image": (
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is on screen?"}]}],
            None,
            ["small.png"],
        ),
        "two_images": (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image"},
                        {"type": "image"},
                        {"type": "text", "text": "Compare."},
                    ],
                }
            ],
            None,
            ["wide.png", "large.png"],
        ),
    }


def run_case(model, processor, pil_processor, messages, tools, images, mean, std):
    text = processor.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=images or None, return_tensors="pt")
    seq = inputs["input_ids"].shape[1]
    prefill = model(**inputs).logits[0].float().clone()
    # The reference for decoding: one forward pass over prompt + continuation. The logits at
    # the continuation's positions are what cached step-by-step decoding must reproduce.
    extended = dict(inputs)
    extra = torch.tensor([CONTINUATION], dtype=inputs["input_ids"].dtype)
    extended["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
    extended["attention_mask"] = torch.ones_like(extended["input_ids"])
    if "mm_token_type_ids" in extended:
        pad = torch.zeros_like(extra, dtype=extended["mm_token_type_ids"].dtype)
        extended["mm_token_type_ids"] = torch.cat([extended["mm_token_type_ids"], pad], dim=1)
    full = model(**extended).logits[0].float()
    decoded = full[seq : seq + len(CONTINUATION)].clone()
    # Long prompts (the tool schema is ~3400 byte-level tokens) keep their first and last 64
    # positions and every 97th between, which bounds the golden files' size.
    if seq > 256:
        keep = sorted(set(range(64)) | set(range(64, seq - 64, 97)) | set(range(seq - 64, seq)))
    else:
        keep = list(range(seq))
    positions = torch.tensor(keep, dtype=torch.int64)
    result = {
        "input_ids": inputs["input_ids"][0].to(torch.int64).contiguous(),
        "prefill_positions": positions,
        "prefill_logits": prefill[positions].contiguous(),
        "decode_logits": decoded.contiguous(),
        "decode_tokens": torch.tensor(CONTINUATION, dtype=torch.int64),
    }
    if images:
        result["image_grid_thw"] = inputs["image_grid_thw"].to(torch.int64).contiguous()
        # HF's own pixels, so the model's parity is tested apart from the resampler's.
        result["pixels_u8"] = to_u8(inputs["pixel_values"], mean, std)
        # The PIL backend's pixels too: HF's two resamplers disagree (on downscaled images by up
        # to several 8-bit levels), and ours follows PIL.
        pil = pil_processor(images=images, return_tensors="pt")
        assert torch.equal(pil["image_grid_thw"], inputs["image_grid_thw"])
        result["pil_pixels_u8"] = to_u8(pil["pixel_values"], mean, std)
    return text, result


def to_u8(pixel_values, mean, std):
    # The processors normalise per channel: v = (k/255 - mean)/std, so the 8-bit k is
    # recoverable exactly; storing k keeps the goldens small. Only the first temporal copy is
    # kept (the second repeats it; the Rust test checks the repetition itself).
    n, dim = pixel_values.shape
    first = pixel_values.reshape(n, 3, 2, dim // 6)[:, :, 0, :].float()
    mean = torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1)
    std = torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1)
    k = torch.round((first * std + mean) * 255).clamp(0, 255)
    return k.reshape(n, -1).to(torch.uint8).contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--tool", required=True, help="prompts/tools/computer_use.json")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image_paths = make_images(out)
    images = {k: Image.open(v).convert("RGB") for k, v in image_paths.items()}
    tool = json.loads(pathlib.Path(args.tool).read_text().replace("{{width}}", "1280").replace("{{height}}", "800"))

    processor = AutoProcessor.from_pretrained(args.model)
    mean, std = processor.image_processor.image_mean, processor.image_processor.image_std
    pil_processor = AutoImageProcessor.from_pretrained(args.model, backend="pil")
    model = AutoModelForImageTextToText.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation="eager"
    ).eval()

    manifest = {
        "model_type": model.config.model_type,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "model_sha256": sha256(pathlib.Path(args.model) / "model.safetensors"),
        "adapter_sha256": sha256(pathlib.Path(args.adapter) / "adapter_model.safetensors"),
        "continuation": CONTINUATION,
        "cases": {},
    }
    results = {}
    for name, (messages, tools, imgs) in cases(tool).items():
        text, r = run_case(model, processor, pil_processor, messages, tools, [images[i] for i in imgs], mean, std)
        manifest["cases"][name] = {"text": text, "images": imgs}
        results[name] = r

    lora = peft.PeftModel.from_pretrained(model, args.adapter).eval()
    for name, (messages, tools, imgs) in cases(tool).items():
        _, r = run_case(lora, processor, pil_processor, messages, tools, [images[i] for i in imgs], mean, std)
        results[name]["lora_prefill_logits"] = r["prefill_logits"]
        results[name]["lora_decode_logits"] = r["decode_logits"]

    for name, r in results.items():
        save_file(r, str(out / f"{name}.safetensors"), metadata={"format": "pt"})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
