"""Loads a model folder in HF transformers (and a PEFT adapter on top, if given), runs one
prompt, and compares its logits with the file `clawdesk model logits` wrote for the same
model, adapter and prompt. Prints the largest absolute difference; exits 1 above --tolerance.

    clawdesk model logits --model M --adapter A --prompt P --image I --dtype f32 --out ours.safetensors
    python scripts/hf/compare-logits.py --model M --adapter A --prompt P --image I --logits ours.safetensors

Needs torch, transformers and peft (the goldens' venv: scripts/hf/make-goldens.sh makes it).
Give an image whose sides are multiples of patch × merge and within the processor's pixel
bounds: then no resampler runs, and HF's two image backends and ours see the same pixels.
"""

import argparse
import sys

import peft
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

torch.set_grad_enabled(False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--image", action="append", default=[])
    ap.add_argument("--logits", required=True, help="the file `clawdesk model logits` wrote")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()

    processor = AutoProcessor.from_pretrained(args.model)
    model = AutoModelForImageTextToText.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    if args.adapter:
        model = peft.PeftModel.from_pretrained(model, args.adapter).eval()
        lora = [n for n, _ in model.named_modules() if n.endswith(".lora_A")]
        visual = [n for n in lora if ".visual." in n]
        print(f"PEFT put adapters on {len(lora)} modules, {len(visual)} of them in the vision tower")
        if visual:
            sys.exit("the adapter reached the vision tower")
    content = [{"type": "image"} for _ in args.image] + [{"type": "text", "text": args.prompt}]
    text = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    images = [Image.open(p).convert("RGB") for p in args.image] or None
    inputs = processor(text=[text], images=images, return_tensors="pt")
    theirs = model(**inputs).logits[0].float()
    ours = load_file(args.logits)
    if not torch.equal(ours["input_ids"].to(torch.int64), inputs["input_ids"][0].to(torch.int64)):
        sys.exit("the token ids differ: the prompts were rendered differently")
    diff = (ours["logits"].float() - theirs).abs().max().item()
    print(f"{theirs.shape[0]} positions × {theirs.shape[1]} logits: max |ours - HF| = {diff:.3g}")
    if diff > args.tolerance:
        sys.exit(f"above the tolerance {args.tolerance}")


if __name__ == "__main__":
    main()
