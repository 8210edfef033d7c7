"""The recall probe of `clawdesk bench probe` on reference implementations in PyTorch.

Is the tiny model's failure to learn associative recall ours (a bug in our candle model or
training code) or the shape's? This trains the same task, `1 k1 v1 ... k4 v4 5 kq` -> v(kq),
on HF transformers' Qwen3 with the practice model's text shape (every weight trained from
scratch, HF initialisation) and on a GPT-2 of the same width, and prints held-out greedy
accuracy over the values as training goes.

    python bench/hf_recall_probe.py --model qwen3 --steps 3000
    python bench/hf_recall_probe.py --model qwen3 --layers 2 --rope-theta 10000 --lr 1e-3 --batch 128
    python bench/hf_recall_probe.py --model gpt2 --steps 10000 --dense

Needs torch and transformers (`pip install torch transformers`); CPU is enough.
"""

import argparse
import random
import time

import torch
import torch.nn.functional as F

BOS, SEPARATOR, FIRST_KEY, FIRST_VALUE = 1, 5, 10, 100


def build(args):
    if args.model == "qwen3":
        from transformers import Qwen3Config, Qwen3ForCausalLM

        return Qwen3ForCausalLM(
            Qwen3Config(
                vocab_size=288,
                hidden_size=args.width,
                intermediate_size=2 * args.width,
                num_hidden_layers=args.layers,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=args.width // 4,
                rope_theta=args.rope_theta,
                tie_word_embeddings=True,
                max_position_embeddings=256,
                initializer_range=args.initializer_range,
            )
        )
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=288,
            n_positions=64,
            n_embd=args.width,
            n_layer=args.layers,
            n_head=4,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    )


def sample(rng, pairs, keys=20, values=20):
    """A sequence, its answer, and its pairs."""
    ks = rng.sample(range(FIRST_KEY, FIRST_KEY + keys), pairs)
    vs = [FIRST_VALUE + rng.randrange(values) for _ in ks]
    ids = [BOS]
    for k, v in zip(ks, vs):
        ids += [k, v]
    q = rng.randrange(pairs)
    return ids + [SEPARATOR, ks[q]], vs[q], list(zip(ks, vs))


def batch(rng, args):
    """Inputs and targets (-100 where nothing is asked). With --dense every other pair is
    asked too, in a shuffled order, after the first answer."""
    xs, ys = [], []
    for _ in range(args.batch):
        ids, answer, pairs = sample(rng, args.pairs)
        seq, target = list(ids), [-100] * (len(ids) - 1) + [answer]
        if args.dense:
            rest = [p for p in pairs if p[0] != ids[-1]]
            rng.shuffle(rest)
            seq.append(answer)
            for k, v in rest:
                seq += [k, v]
                target += [-100, v]
            seq = seq[:-1]
        xs.append(seq)
        ys.append(target)
    return torch.tensor(xs), torch.tensor(ys)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["qwen3", "gpt2"], default="qwen3")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--rope-theta", type=float, default=5e6)
    p.add_argument("--initializer-range", type=float, default=0.02,
                   help="std of Qwen3's random weights (0.02 is HF's)")
    p.add_argument("--dense", action="store_true")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    model = build(args)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)
    rng, held_rng = random.Random(args.seed), random.Random(args.seed + 1000)
    held = [sample(held_rng, args.pairs)[:2] for _ in range(200)]
    hx = torch.tensor([h[0] for h in held])
    hy = torch.tensor([h[1] for h in held])
    started = time.time()
    print(f"{args.model}, width {args.width}, {args.layers} layers, {args.pairs} pairs, "
          f"batch {args.batch}, lr {args.lr}{', dense' if args.dense else ''}")
    for step in range(1, args.steps + 1):
        x, y = batch(rng, args)
        logits = model(x).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            with torch.no_grad():
                last = model(hx).logits[:, -1, FIRST_VALUE:FIRST_VALUE + 20]
                accuracy = ((last.argmax(-1) + FIRST_VALUE) == hy).float().mean().item()
            print(f"step {step:6d}  loss {loss.item():.3f}  held-out {accuracy:.2f}  "
                  f"({time.time() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
