"""Reads ClawDesk's exports with the tools they are written for, and prints what it found as
one JSON object (tests/export_cli.rs compares it with the store).

  export_formats.py osworld RESULTS ACTION_SPACE OBSERVATION_TYPE MODEL
      OSWorld's results tree, read the way OSWorld's show_result.py reads it (the logic is
      restated here, since desktop-env on PyPI pulls in a VM stack): every domain folder, every
      example folder in it with a result.txt, its score as a float; plus each traj.jsonl line's
      keys and the screenshots they name.
  export_formats.py trl FOLDER [TOKENIZER_DIR]
      TRL's conversational layout loaded with `datasets` (images must come back as
      datasets.Image), checked with TRL's own is_conversational and prepare_multimodal_messages,
      and rendered with maybe_apply_chat_template when a tokenizer folder is given.
  export_formats.py verl FOLDER
      verl's RLHFDataset columns, read with pyarrow and `datasets`; the prompt's <image> markers
      expanded against the images as RLHFDataset._build_messages does.
"""

import io
import json
import os
import re
import sys


def osworld(results, action_space, observation_type, model):
    target = os.path.join(results, action_space, observation_type, model)
    if not os.path.exists(target):
        return {"error": f"no results under {target}"}
    domains = {}
    all_results = []
    lines = 0
    screenshots = 0
    keys = set()
    for domain in sorted(os.listdir(target)):
        domain_path = os.path.join(target, domain)
        if not os.path.isdir(domain_path):
            continue
        for example in sorted(os.listdir(domain_path)):
            example_path = os.path.join(domain_path, example)
            if not os.path.isdir(example_path):
                continue
            # As show_result.py: an example without result.txt is unfinished and not counted.
            if "result.txt" not in os.listdir(example_path):
                continue
            with open(os.path.join(example_path, "result.txt")) as f:
                score = float(f.read())
            domains.setdefault(domain, []).append(score)
            all_results.append(score)
            with open(os.path.join(example_path, "traj.jsonl")) as f:
                for line in f:
                    record = json.loads(line)
                    lines += 1
                    keys.update(record.keys())
                    shot = record.get("screenshot_file")
                    if shot:
                        path = os.path.join(example_path, shot)
                        assert os.path.isfile(path), f"{path} is named but missing"
                        assert re.fullmatch(r"step_\d+_\d{8}@\d{12}\.png", shot), shot
                        screenshots += 1
    return {
        "runned": len(all_results),
        "success_rate": (sum(all_results) / len(all_results)) if all_results else None,
        "domains": {d: {"runned": len(s), "success": sum(s)} for d, s in domains.items()},
        "lines": lines,
        "screenshots": screenshots,
        "keys": sorted(keys),
    }


def trl(folder, tokenizer_dir=None):
    import datasets
    from PIL import Image
    from trl.data_utils import is_conversational, prepare_multimodal_messages

    ds = datasets.load_dataset(folder, split="train")
    images_feature = ds.features["images"]
    assert isinstance(images_feature, datasets.List), images_feature
    assert isinstance(images_feature.feature, datasets.Image), images_feature
    tokenizer = None
    if tokenizer_dir:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    rows = 0
    images = 0
    labels = {"true": 0, "false": 0, "none": 0}
    rendered = 0
    for row in ds:
        rows += 1
        assert is_conversational(row), row["prompt"]
        for image in row["images"]:
            assert isinstance(image, Image.Image), type(image)
            assert image.width > 0 and image.height > 0
        images += len(row["images"])
        # TRL's collators fill the placeholders with the row's images; a count mismatch raises.
        filled = prepare_multimodal_messages(row["prompt"], images=row["images"])
        placed = [p for m in filled for p in m["content"] if p["type"] == "image"]
        assert len(placed) == len(row["images"])
        assert all(isinstance(p["image"], Image.Image) for p in placed)
        prepare_multimodal_messages(row["completion"])
        labels["none" if row["label"] is None else str(row["label"]).lower()] += 1
        if tokenizer is not None:
            from trl.data_utils import maybe_apply_chat_template

            example = {"prompt": row["prompt"], "completion": row["completion"]}
            text = maybe_apply_chat_template(example, tokenizer)
            assert text["prompt"] and text["completion"], text
            rendered += 1
    return {"rows": rows, "images": images, "labels": labels, "rendered": rendered}


def verl(folder):
    import datasets
    import pyarrow.parquet as pq
    from PIL import Image

    path = os.path.join(folder, "train.parquet")
    schema = pq.read_schema(path)
    for column in ["data_source", "prompt", "images", "ability", "reward_model", "extra_info"]:
        assert column in schema.names, f"{column} is missing: {schema.names}"
    table = pq.read_table(path).to_pylist()
    rows = 0
    markers = 0
    for index, row in enumerate(table):
        rows += 1
        assert row["data_source"] == "clawdesk"
        assert row["reward_model"]["style"] and row["reward_model"]["ground_truth"] is not None
        json.loads(row["reward_model"]["ground_truth"])
        assert row["extra_info"]["split"] == "train" and row["extra_info"]["index"] == index
        images = row["images"]
        # RLHFDataset._build_messages: string content split on <image>/<video>, each marker
        # taking the next image (its bytes opened as a picture); the count must match.
        offset = 0
        for message in row["prompt"]:
            assert message["role"] in ("system", "user", "assistant", "tool"), message
            content = message["content"]
            assert isinstance(content, str), type(content)
            for segment in [s for s in re.split("(<image>|<video>)", content) if s != ""]:
                assert segment != "<video>", "no videos are exported"
                if segment == "<image>":
                    assert offset < len(images), "more markers than images"
                    Image.open(io.BytesIO(images[offset]["bytes"])).load()
                    offset += 1
        assert offset == len(images), f"image_offset {offset} != len(images) {len(images)}"
        markers += offset
    # verl loads the file with datasets.load_dataset("parquet"); images come back as pictures.
    ds = datasets.load_dataset("parquet", data_files=path)["train"]
    assert isinstance(ds.features["images"].feature, datasets.Image), ds.features["images"]
    for row in ds:
        assert all(isinstance(i, Image.Image) for i in row["images"])
    return {"rows": rows, "markers": markers}


def main():
    kind, args = sys.argv[1], sys.argv[2:]
    result = {"osworld": osworld, "trl": trl, "verl": verl}[kind](*args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
