"""PyTorch + transformers + PEFT side of `clawdesk bench model`: the same three measurements on
the same model directory, printed as one JSON line (tokens per second, medians).

Usage: python hf_model_bench.py MODEL_DIR PROMPT_TOKENS DECODE_TOKENS BATCH RESPONSE_TOKENS
       ITERATIONS RANK THREADS DEVICE [IMAGE_SIDE]

IMAGE_SIDE (merged tokens per side, 0: none) adds the prefill of one square image of random
patch values before the text prompt, as `clawdesk bench model` builds it.
"""

import json
import statistics
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForImageTextToText


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    model_dir = sys.argv[1]
    prompt, decode, batch, response, iterations, rank, threads = map(int, sys.argv[2:9])
    device = sys.argv[9]
    if threads > 0:
        torch.set_num_threads(threads)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    vocab = model.config.text_config.vocab_size
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (1, prompt), generator=gen).to(device)

    def median_rate(tokens, fn):
        fn()  # warm-up
        times = []
        for _ in range(iterations):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
        return tokens / statistics.median(times)

    image_side = int(sys.argv[10]) if len(sys.argv) > 10 else 0
    with torch.no_grad():
        prefill_rate = median_rate(prompt, lambda: model(input_ids=ids, use_cache=True, logits_to_keep=1))
        prefill_image_rate = None
        if image_side > 0:
            cfg = model.config
            vision = cfg.vision_config
            merge = vision.spatial_merge_size
            gh = gw = image_side * merge
            patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size ** 2
            pixels = torch.randn(gh * gw, patch_dim, generator=gen).to(device=device, dtype=dtype)
            image_ids = [cfg.vision_start_token_id] + [cfg.image_token_id] * image_side ** 2 + [cfg.vision_end_token_id]
            image_prompt = torch.cat([torch.tensor([image_ids], device=device), ids], dim=1)
            grid = torch.tensor([[1, gh, gw]], device=device)
            # Qwen-VL's 3-D positions need the image tokens marked (the processor's output).
            marks = (image_prompt == cfg.image_token_id).long()
            prefill_image_rate = median_rate(image_prompt.shape[1], lambda: model(
                input_ids=image_prompt, pixel_values=pixels, image_grid_thw=grid,
                mm_token_type_ids=marks, use_cache=True, logits_to_keep=1))

        def decode_run():
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            past = out.past_key_values
            tok = ids[:, -1:]
            for i in range(decode):
                out = model(input_ids=tok, past_key_values=past, use_cache=True,
                            cache_position=torch.tensor([prompt + i], device=device))
                past = out.past_key_values
            return out

        # Decode rate excludes the prefill: time both, subtract the prefill.
        both = median_rate(1, decode_run)
        decode_rate = decode / (1.0 / both - prompt / prefill_rate)

    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                        # The language model only, as ours: Qwen2.5-VL's vision MLP has the same names.
                        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")
    peft_model = get_peft_model(model, config)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    opt = torch.optim.AdamW(params, lr=1e-4)
    seqs = torch.randint(0, 256, (batch, prompt + response), generator=gen).to(device)

    def train_step():
        logits = peft_model(input_ids=seqs[:, :-1], logits_to_keep=response).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        target = seqs[:, prompt:]
        loss = -logp.gather(-1, target.unsqueeze(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    train_rate = median_rate(batch * (prompt + response), train_step)
    rates = {"prefill": prefill_rate, "decode": decode_rate, "train": train_rate,
             "torch": torch.__version__, "threads": torch.get_num_threads()}
    if prefill_image_rate is not None:
        rates["prefill_image"] = prefill_image_rate
    print(json.dumps(rates))


if __name__ == "__main__":
    main()
