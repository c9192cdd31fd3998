#!/usr/bin/env python3
"""Translates a NeMo RL DPO configuration (examples/configs/dpo.yaml style, with
either the DTensor or the Megatron policy section) into a dpo_hpc .cfg.

    scripts/nemo_rl_to_cfg.py dpo.yaml [-o run.cfg] [--dataset pairs.h5]
        [--backend cuda|cpu] [--strict] [key=value ...]

Trailing key=value arguments are NeMo RL command-line overrides (dotted paths,
YAML values), applied to the YAML before translating, as NeMo RL applies them.

Every translated key is written with a comment naming its NeMo RL source; what
has no dpo_hpc equivalent is listed on stderr (and in a comment block at the top
of the output) with the reason. --strict turns keys this script does not know
into an error (exit 2); by default they are reported and skipped. The data
section cannot be translated literally: NeMo RL tokenizes JSONL at start-up,
dpo_hpc trains on a prepared HDF5 file, so the output names the dataset file and
prints the dpo_prep command that makes it from the YAML's JSONL paths.
See doc/migrating-from-nemo-rl.md.
"""
import argparse
import os
import re
import sys

try:
    import yaml
except ImportError:  # Debian: python3-yaml (scripts/setup.sh installs it)
    sys.exit("nemo_rl_to_cfg: needs PyYAML (apt-get install python3-yaml)")


class Translator:
    def __init__(self, src, strict):
        self.src = src
        self.strict = strict
        self.out = {}          # dpo_hpc key -> (value, NeMo RL source key)
        self.dropped = []      # (NeMo RL key, reason)
        self.unknown = []      # NeMo RL keys this script does not know
        self.used = set()      # NeMo RL keys consumed

    # -- access to the NeMo RL tree --------------------------------------------
    def get(self, path, default=None):
        node = self.src
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        self.used.add(path)
        return node

    def set(self, key, value, source):
        self.out[key] = (value, source)

    def copy(self, src_key, dst_key=None, conv=None):
        v = self.get(src_key)
        if v is None:
            return
        self.set(dst_key or src_key, conv(v) if conv else v, src_key)

    def drop(self, key, reason):
        v = self.get(key)
        if isinstance(v, dict):   # a feature section: only when switched on
            v = v.get("enabled") or None
        if v not in (None, False):
            self.dropped.append((key, reason))

    # -- sections --------------------------------------------------------------
    def dpo(self):
        for k in ("max_num_epochs", "max_num_steps", "val_period", "val_at_start",
                  "val_global_batch_size", "seed", "reference_policy_kl_penalty",
                  "preference_loss_weight", "sft_loss_weight",
                  "preference_average_log_probs", "sft_average_log_probs"):
            self.copy("dpo." + k)
        vb = self.get("dpo.val_batches")
        if vb:
            vgbs = self.get("dpo.val_global_batch_size", 32)
            self.set("dpo.val_max_pairs", int(vb) * int(vgbs),
                     "dpo.val_batches x dpo.val_global_batch_size")
        self.copy("dpo.val_micro_batch_size")

    def policy(self):
        name = self.get("policy.model_name")
        if name:
            self.set("policy.model_name", name, "policy.model_name")
            if not os.path.exists(name):
                self.dropped.append(("policy.model_name",
                                     f"'{name}' is not a local path: dpo_hpc reads a Hugging Face "
                                     "model folder (config.json + safetensors) or a checkpoint; "
                                     "download the model and point policy.model_name at the folder"))
        self.get("policy.tokenizer.name")  # used for the dpo_prep hint
        for k in ("train_global_batch_size", "train_micro_batch_size",
                  "max_total_sequence_length", "max_grad_norm", "logprob_chunk_size"):
            self.copy("policy." + k)
        self.precision()
        self.parallelism()
        self.optimizer()
        self.scheduler()
        for k, ours in (("max_new_tokens", None), ("temperature", None), ("top_p", None),
                        ("top_k", None)):
            v = self.get("policy.generation." + k)
            if v is not None:
                self.set("policy.generation." + (ours or k), 0 if (k == "top_k" and v is None) else v,
                         "policy.generation." + k)
        for k, why in (("dynamic_batching", "dpo_hpc always packs the sequences of a micro-batch "
                                            "without padding"),
                       ("sequence_packing", "dpo_hpc always packs the sequences of a micro-batch")):
            self.drop("policy." + k, why)
            self.mark_used("policy." + k)
        # Padding and generation-engine settings: nothing to translate.
        for k in ("make_sequence_length_divisible_by", "refit_buffer_size_gb"):
            self.get("policy." + k)

    def precision(self):
        p = self.get("policy.precision")
        if p is None:
            return
        table = {"bfloat16": "bf16", "bf16": "bf16", "float32": "fp32", "fp32": "fp32",
                 "tf32": "tf32"}
        if str(p) not in table:
            self.dropped.append(("policy.precision", f"'{p}' has no equivalent (bf16, tf32, fp32)"))
            return
        self.set("cluster.matmul_precision", table[str(p)], "policy.precision")
        if table[str(p)] == "bf16":
            self.dropped.append(("policy.precision",
                                 "note: dpo_hpc keeps weights, gradients and activations in fp32 "
                                 "and runs the matmuls on bf16 tensor cores (doc/architecture.md)"))

    def parallelism(self):
        mcfg = self.get("policy.megatron_cfg.enabled")
        if mcfg:
            self.copy("policy.megatron_cfg.tensor_model_parallel_size", "policy.tensor_parallel_size")
            for k, why in (("pipeline_model_parallel_size", "no pipeline parallelism"),
                           ("context_parallel_size", "no context parallelism"),
                           ("sequence_parallel", "activations of the TP group are replicated")):
                v = self.get("policy.megatron_cfg." + k)
                if v not in (None, 1, False):
                    self.dropped.append(("policy.megatron_cfg." + k, why))
            dist = self.get("policy.megatron_cfg.optimizer.use_distributed_optimizer")
            if dist is not None:
                self.set("policy.zero_stage", 1 if dist else 0,
                         "policy.megatron_cfg.optimizer.use_distributed_optimizer")
        else:
            self.copy("policy.dtensor_cfg.tensor_parallel_size", "policy.tensor_parallel_size")
            for k, why in (("context_parallel_size", "no context parallelism"),
                           ("sequence_parallel", "activations of the TP group are replicated"),
                           ("cpu_offload", "no CPU offload (ZeRO-1 shards the AdamW moments)")):
                v = self.get("policy.dtensor_cfg." + k)
                if v not in (None, 1, False):
                    self.dropped.append(("policy.dtensor_cfg." + k, why))
        section = "policy.megatron_cfg." if mcfg else "policy.dtensor_cfg."
        self.copy(section + "activation_checkpointing", "policy.activation_checkpointing",
                  conv=bool)
        self.get("policy.dtensor_cfg.enabled")
        self.get("policy.dtensor_cfg.custom_parallel_plan")
        # The other section of the pair is unused by NeMo RL either.
        self.mark_used("policy.megatron_cfg" if not mcfg else "policy.dtensor_cfg")

    def optimizer(self):
        if self.get("policy.megatron_cfg.enabled"):
            base = "policy.megatron_cfg.optimizer."
            self.copy(base + "lr", "policy.optimizer.lr")
            self.copy(base + "weight_decay", "policy.optimizer.weight_decay")
            b1, b2 = self.get(base + "adam_beta1"), self.get(base + "adam_beta2")
            if b1 is not None and b2 is not None:
                self.set("policy.optimizer.betas", [b1, b2], base + "adam_beta1/2")
            self.copy(base + "adam_eps", "policy.optimizer.eps")
            self.copy("policy.megatron_cfg.optimizer.clip_grad", "policy.max_grad_norm")
            self.mark_used("policy.megatron_cfg")
            return
        name = self.get("policy.optimizer.name")
        if name is not None and "adamw" not in str(name).lower():
            self.dropped.append(("policy.optimizer.name", f"'{name}': dpo_hpc runs AdamW only"))
        kw = "policy.optimizer.kwargs."
        for k in ("lr", "weight_decay", "betas", "eps"):
            self.copy(kw + k, "policy.optimizer." + k)
        for k in ("foreach", "fused"):
            self.get(kw + k)

    def scheduler(self):
        if self.get("policy.megatron_cfg.enabled"):
            base = "policy.megatron_cfg.scheduler."
            self.copy(base + "lr_warmup_iters", "policy.scheduler.warmup_steps")
            style = self.get(base + "lr_decay_style")
            if style in ("constant", "linear", "cosine"):
                self.set("policy.scheduler.type", style, base + "lr_decay_style")
            elif style is not None:
                self.dropped.append((base + "lr_decay_style", f"'{style}' is not constant, linear or cosine"))
            lr, mn = self.get("policy.megatron_cfg.optimizer.lr"), self.get("policy.megatron_cfg.optimizer.min_lr")
            if lr and mn is not None:
                self.set("policy.scheduler.min_lr_ratio", float(mn) / float(lr), "optimizer.min_lr / lr")
            return
        sched = self.get("policy.scheduler")
        if not sched:
            return
        items = sched if isinstance(sched, list) else [sched]
        stages = [s for s in items if isinstance(s, dict) and "name" in s]
        lr = self.get("policy.optimizer.kwargs.lr")
        kind, warm = None, 0
        for i, s in enumerate(stages):
            n = s["name"].rsplit(".", 1)[-1]
            kw = s.get("kwargs", {}) or {}
            if n == "LinearLR" and i == 0 and len(stages) > 1:
                warm = int(kw.get("total_iters", 0))   # warm-up stage before the main one
            elif n == "LinearLR":
                kind = "linear"
                ef = kw.get("end_factor")
                if ef is not None:
                    self.set("policy.scheduler.min_lr_ratio", float(ef), "LinearLR end_factor")
            elif n == "ConstantLR":
                kind = kind or "constant"
                if float(kw.get("factor", 1.0)) != 1.0:
                    self.dropped.append(("policy.scheduler", "ConstantLR factor != 1 (scale lr instead)"))
            elif n == "CosineAnnealingLR":
                kind = "cosine"
                if lr and kw.get("eta_min") is not None:
                    self.set("policy.scheduler.min_lr_ratio", float(kw["eta_min"]) / float(lr),
                             "CosineAnnealingLR eta_min / lr")
                if kw.get("T_max") is not None:
                    self.dropped.append(("policy.scheduler", "CosineAnnealingLR T_max: dpo_hpc decays "
                                         "to the last step (dpo.max_num_steps)"))
            else:
                self.dropped.append(("policy.scheduler", f"{n} has no equivalent"))
        if kind:
            self.set("policy.scheduler.type", kind, "policy.scheduler")
        if warm:
            self.set("policy.scheduler.warmup_steps", warm, "policy.scheduler[0] LinearLR total_iters")

    def checkpointing(self):
        for k in ("enabled", "checkpoint_dir", "higher_is_better", "keep_top_k", "save_period"):
            self.copy("checkpointing." + k)
        m = self.get("checkpointing.metric_name")
        if m:
            ours = metric_name(m, self.val_names())
            if ours:
                self.set("checkpointing.metric_name", ours, "checkpointing.metric_name")
            else:
                self.dropped.append(("checkpointing.metric_name", f"'{m}' names no validation metric "
                                     "dpo_hpc records; keep_top_k is dropped with it"))
                self.out.pop("checkpointing.keep_top_k", None)
        self.drop("checkpointing.checkpoint_must_save_by",
                  "use the job scripts: SIGUSR1 before the limit → checkpoint → requeue (doc/cluster.md)")
        if os.path.isdir(str(self.get("checkpointing.checkpoint_dir", ""))):
            self.set("checkpointing.resume", True, "NeMo RL resumes from checkpoint_dir automatically")

    def val_names(self):
        v = self.get("data.val_data_paths")
        if isinstance(v, dict) and v:
            return list(v)
        return ["validation"]

    def data(self, dataset):
        self.set("data.dataset_path", dataset, "data.train_data_path + data.val_data_paths (via dpo_prep)")
        self.copy("data.shuffle")
        for k in ("dataset_name", "train_data_path", "val_data_paths", "max_input_seq_length",
                  "prompt_file", "system_prompt_file"):
            self.get("data." + k)

    def logger(self):
        self.copy("logger.log_dir")
        for k in ("wandb_enabled", "tensorboard_enabled", "mlflow_enabled", "swanlab_enabled"):
            if self.get("logger." + k):
                self.dropped.append(("logger." + k, "dpo_hpc writes <log_dir>/metrics.jsonl; "
                                     "scripts/plot_metrics.py plots it"))
        self.mark_used("logger")

    def cluster(self, backend):
        self.set("cluster.backend", backend, "NeMo RL runs on GPUs" if backend == "cuda" else "--backend cpu")
        g, n = self.get("cluster.gpus_per_node"), self.get("cluster.num_nodes")
        if g or n:
            self.dropped.append(("cluster.gpus_per_node/num_nodes",
                                 f"ranks come from the launcher: mpirun -np {int(g or 1) * int(n or 1)} "
                                 "or the job scripts in jobscripts/"))

    def mark_used(self, prefix):
        for path in leaves(self.src):
            if path == prefix or path.startswith(prefix + "."):
                self.used.add(path)

    def check_unknown(self):
        for path in leaves(self.src):
            if not any(path == u or path.startswith(u + ".") for u in self.used):
                self.unknown.append(path)


def leaves(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix


def metric_name(m, vals):
    """NeMo RL's 'val_loss', 'val:validation-NAME_loss', 'validation-NAME_accuracy' …
    → dpo_hpc's 'val:NAME/loss'."""
    m = str(m)
    x = re.fullmatch(r"(?:val:)?validation-(.+)_(loss|accuracy|rewards_chosen|rewards_rejected|margins|"
                     r"preference_loss|sft_loss)", m)
    if x:
        return f"val:{x.group(1)}/{x.group(2)}"
    x = re.fullmatch(r"(?:val:|val_)(loss|accuracy|margins|preference_loss|sft_loss)", m)
    if x:
        return f"val:{vals[0]}/{x.group(1)}"
    return None


def resolve(tree, root=None, here=None):
    """OmegaConf-style ${a.b} and ${.sibling} interpolations used in NeMo RL's YAML."""
    root = tree if root is None else root
    here = tree if here is None else here
    if isinstance(tree, dict):
        return {k: resolve(v, root, tree) for k, v in tree.items()}
    if isinstance(tree, list):
        return [resolve(v, root, here) for v in tree]
    if isinstance(tree, str):
        x = re.fullmatch(r"\$\{(\.?)([A-Za-z0-9_.]+)\}", tree)
        if x:
            node = here if x.group(1) else root
            for part in x.group(2).split("."):
                if not isinstance(node, dict) or part not in node:
                    return tree
                node = node[part]
            return resolve(node, root, here)
    return tree


def apply_override(tree, arg):
    key, sep, val = arg.partition("=")
    if not sep:
        sys.exit(f"nemo_rl_to_cfg: override '{arg}' is not key=value")
    key = key.lstrip("+")
    node = tree
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = yaml.safe_load(val) if val != "" else None


def cfg_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}L" if abs(v) >= 2 ** 31 else str(v)
    if isinstance(v, float):
        s = repr(v)
        return s if any(c in s for c in ".e") else s + ".0"
    if isinstance(v, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", v):
        return v   # YAML 1.1 reads 1e-5 as a string; it is a number in the cfg
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(cfg_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def render(tr, yaml_path, dataset):
    lines = [f"# dpo_hpc configuration translated from the NeMo RL config {yaml_path}",
             "# by scripts/nemo_rl_to_cfg.py; each key names its NeMo RL source."]
    if tr.dropped:
        lines.append("#\n# Not translated (no dpo_hpc equivalent), or translated with a note:")
        lines += [f"#   {k}: {why}" for k, why in tr.dropped]
    if tr.unknown:
        lines.append("#\n# Unknown to the translator (skipped):")
        lines += [f"#   {k}" for k in tr.unknown]
    train = tr.get("data.train_data_path")
    if train:
        tok = tr.get("policy.tokenizer.name") or tr.get("policy.model_name") or "<tokenizer folder>"
        vals = tr.get("data.val_data_paths") or {}
        val_args = " ".join(f"--val {n}={p}" for n, p in vals.items()) if isinstance(vals, dict) else ""
        length = tr.get("policy.max_total_sequence_length")
        lines.append("#\n# Make the dataset first (doc/data-prep.md):")
        lines.append(f"#   dpo_prep --tokenizer {tok} --output {dataset} --train {train} {val_args}"
                     + (f" --max-length {length}" if length else ""))
    sections = {}
    for key, (value, source) in tr.out.items():
        sec, rest = key.split(".", 1)
        sections.setdefault(sec, []).append((rest, value, source))
    for sec in ("policy", "dpo", "data", "checkpointing", "logger", "cluster"):
        if sec not in sections:
            continue
        lines.append(f"\n{sec} = {{")
        groups = {}
        for rest, value, source in sections[sec]:
            head, _, tail = rest.rpartition(".")
            groups.setdefault(head, []).append((tail, value, source))
        for head in sorted(groups, key=lambda h: (h != "", h)):
            ind = "  " if head == "" else "    "
            if head:
                lines.append(f"  {head} = {{")
            for tail, value, source in groups[head]:
                lines.append(f"{ind}{tail} = {cfg_value(value)};  # {source}")
            if head:
                lines.append("  };")
        lines.append("};")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("yaml")
    ap.add_argument("overrides", nargs="*", help="NeMo RL overrides key=value")
    ap.add_argument("-o", "--output", help="write the .cfg here (default: stdout)")
    ap.add_argument("--dataset", default="dpo_data.h5", help="data.dataset_path of the output")
    ap.add_argument("--backend", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--strict", action="store_true", help="unknown NeMo RL keys are an error")
    a = ap.parse_intermixed_args()
    try:
        with open(a.yaml) as f:
            tree = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        sys.exit(f"nemo_rl_to_cfg: {a.yaml}: {e}")
    if not isinstance(tree, dict):
        sys.exit(f"nemo_rl_to_cfg: {a.yaml}: the top level is not a mapping")
    tree.pop("defaults", None)   # Hydra inheritance: translate the merged file instead
    for o in a.overrides:
        apply_override(tree, o)
    tree = resolve(tree)
    tr = Translator(tree, a.strict)
    tr.dpo()
    tr.policy()
    tr.data(a.dataset)
    tr.checkpointing()
    tr.logger()
    tr.cluster(a.backend)
    tr.check_unknown()
    for k, why in tr.dropped:
        print(f"nemo_rl_to_cfg: {k}: {why}", file=sys.stderr)
    for k in tr.unknown:
        print(f"nemo_rl_to_cfg: unknown NeMo RL key skipped: {k}", file=sys.stderr)
    if tr.unknown and a.strict:
        sys.exit(2)
    text = render(tr, a.yaml, a.dataset)
    if a.output:
        tmp = a.output + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, a.output)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
