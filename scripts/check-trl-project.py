#!/usr/bin/env python3
"""Checks a `webtune export --format trl` project against its run record, by reading train.py's
syntax tree (nothing is imported or run): every setting of the run must appear as a literal keyword
of LoraConfig, SFTConfig and BitsAndBytesConfig (or a module constant) with the record's value, and
data/*.jsonl must hold the run's number of rows.

usage: python3 scripts/check-trl-project.py PROJECT_DIR     (exit 0 when everything matches)
"""
import ast
import json
import sys
from pathlib import Path

# Our schedule names -> transformers' (our "constant" warms up when warmupSteps > 0).
SCHEDULERS = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def rows(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def expected(record, train_rows, validation_rows):
    s, t, lora = record["settings"], record["settings"]["train"], record["settings"]["lora"]
    conversational = any("messages" in r or isinstance(r.get("prompt"), list) for r in train_rows + validation_rows)
    want = {
        "LoraConfig": {
            "r": lora["r"], "lora_alpha": lora["alpha"], "lora_dropout": lora["dropout"],
            "target_modules": lora["targets"], "use_rslora": lora["rslora"],
        },
        "SFTConfig": {
            "learning_rate": t["lr"], "lr_scheduler_type": SCHEDULERS[t["schedule"]], "warmup_steps": t["warmupSteps"],
            "num_train_epochs": t["epochs"], "max_steps": -1 if t["maxSteps"] is None else t["maxSteps"],
            "per_device_train_batch_size": t["batch"], "gradient_accumulation_steps": t["gradAccum"],
            "max_length": s["seqLen"], "packing": s["packing"], "completion_only_loss": s["completionOnlyLoss"],
            "assistant_only_loss": s["assistantOnlyLoss"] and conversational,
            "seed": t["seed"], "weight_decay": t["weightDecay"], "max_grad_norm": t["maxGradNorm"],
            "gradient_checkpointing": s["checkpointing"], "eval_strategy": "epoch" if validation_rows else "no",
        },
        "constants": {
            "BASE_MODEL": record["base"]["id"] or record["base"]["folder"],
            "REVISION": record["base"]["revision"],
            "TEMPLATE": record["dataset"]["template"],
        },
    }
    if record["base"]["quant"] == "nf4":
        want["BitsAndBytesConfig"] = {
            "load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": record["base"]["doubleQuant"],
        }
    return want


def found(tree):
    calls, constants = {}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("LoraConfig", "SFTConfig", "BitsAndBytesConfig"):
            if node.func.id in calls:
                raise SystemExit(f"train.py calls {node.func.id} twice")
            kw = {}
            for k in node.keywords:
                try:
                    kw[k.arg] = ast.literal_eval(k.value)
                except ValueError:
                    kw[k.arg] = ast.unparse(k.value)
            calls[node.func.id] = kw
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    calls["constants"] = constants
    return calls


def main():
    project = Path(sys.argv[1])
    record = json.loads((project / "webtune-run.json").read_text(encoding="utf-8"))
    train_rows, validation_rows = rows(project / "data" / "train.jsonl"), rows(project / "data" / "validation.jsonl")
    tree = ast.parse((project / "train.py").read_text(encoding="utf-8"), filename="train.py")
    want, have = expected(record, train_rows, validation_rows), found(tree)
    problems, checked = [], 0
    for call, settings in want.items():
        for key, value in settings.items():
            checked += 1
            got = have.get(call, {}).get(key, "<missing>")
            if got != value or type(got) is not type(value):
                problems.append(f"{call}.{key}: train.py has {got!r}, the run record says {value!r}")
    if len(train_rows) != record["dataset"]["trainExamples"]:
        problems.append(f"data/train.jsonl has {len(train_rows)} rows, the run had {record['dataset']['trainExamples']}")
    if len(validation_rows) != record["dataset"]["validationExamples"]:
        problems.append(f"data/validation.jsonl has {len(validation_rows)} rows, the run had {record['dataset']['validationExamples']}")
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"ok: {checked} settings and {len(train_rows) + len(validation_rows)} rows match webtune-run.json")


if __name__ == "__main__":
    main()
