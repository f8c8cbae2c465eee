"""Loss-curve goldens from LLaVA's own trainer: haotian-liu/LLaVA's llava/train/train.py, unmodified, on the
demo's tiny models and data, fp32 on the CPU; tests/test_llava_train_curves.c runs `llava train` with the mirrored
llava.c settings and asserts the same loss (and learning rate) at every step.

Environments: tools/reference/requirements-llava-train.txt (LLaVA HEAD c121f04's pins: transformers 4.37.2,
tokenizers 0.15.1, accelerate 0.21.0; torch 2.5.1, the torch of the other reference scripts, where LLaVA pins 2.1.2)
and, for the release configuration, requirements-llava-train-431.txt (LLaVA 44e0562's transformers 4.31.0,
tokenizers 0.13.3). LLaVA's source: work trees at c121f04 and 44e0562, e.g.
`git --git-dir=MIRROR archive c121f04 llava | tar -x -C /tmp/llava_src`.

    build/llava demo --fast --out /tmp/demo24        # the demo's models and data (the test makes the same world)
    /tmp/llavatrain/bin/python tools/reference/make_llava_train_goldens.py --llava /tmp/llava_src \
        --llava-release /tmp/llava_rel --python-431 /tmp/llavatrain431/bin/python --demo /tmp/demo24 \
        --configs stage1_full,stage2_full,stage2_grouped_1proc,stage2_grouped_torchrun1,stage2_grouped_torchrun2,\
stage2_grouped_torchrun2_ga2,stage2_full_release,stage2_lora       # tests/data/llava_train/<config>/

Regenerate all configurations together: stage 2 starts from the mm_projector.bin LLaVA's stage-1 run writes, and
stage 1 from the projector torch initialises inside train.py, which differs from run to run (torch seeds its global
generator from the OS at start-up and train.py builds the projector before HF's set_seed). Each golden records the
checksum of the projector its run started from; the test refuses a stale set.

What runs is LLaVA's `llava.train.train.train()`, called by this file (`launch` mode; under torchrun one per rank) as
train_mem.py calls it but without attn_implementation="flash_attention_2" (flash-attn needs CUDA): HF's default
attention, fp32. The one change to what LLaVA computes: train.py casts the vision tower to fp16 when bf16 is off
(c121f04 L917, 44e0562 L878); here CLIPVisionTower.to drops the dtype, so the tower stays fp32. Everything else this
file adds only observes:
  - a TrainerCallback (added after Trainer.__init__): the learning rate each step uses; which generator the sampler
    draws from once accelerate prepared the loader; in stage 1 the projector train.py initialised (saved before the
    first step: llava.c starts stage 1 from it);
  - Trainer._maybe_log_save_evaluate wrapped to read the step's loss before HF rounds it to 4 decimals (the same
    cross-rank gather HF does next);
  - Accelerator.clip_grad_norm_ wrapped to read the gradient norm it returns (transformers 4.37 does not log it);
  - LazySupervisedDataset.__getitem__ wrapped to record which samples each rank read, in order;
  - with --lora_enable (stage2_lora): train.py's find_all_linear_names wrapped to record the module names it returns
    (LoraConfig's target_modules), and peft.get_peft_model wrapped to save the adapters it made, before the first
    step, as a PEFT adapter folder (lora_init/): PEFT draws every A from torch's global generator inside train.py
    (kaiming-uniform; B zero) before HF's set_seed, a draw llava.c cannot repeat, so llava.c starts from it
    (lora.init_adapter). The callback also records which parameters train and LLaVATrainer.create_optimizer's groups.
Stand-ins: train.py's savers import `deepspeed.zero` and `ZeroParamStatus` before they look whether a parameter is
ZeRO-partitioned (never, here): empty modules stand for them and are never called (transformers and accelerate still
find no deepspeed installed). flash-attn and bitsandbytes are not imported on these paths.

Each configuration writes tests/data/llava_train/<config>/: golden.json (per step: the loss as HF's Trainer logs it,
4 decimals, and unrounded; the learning rate HF logs (the one after the scheduler's step) and the one the step used;
the gradient norm before clipping; the samples each rank took; and the command, versions, launch, the sampler's
generator and the CRC-32C of the demo files and the starting projector) and config.json (the llava.c `--set` list
that mirrors the run; @WORLD@ stands for the demo world's folder, @DATA@ for this folder). stage1_full also keeps
projector_init.safetensors (the start) and mm_projector.bin (LLaVA's own stage-1 output, stage 2's start);
stage2_lora keeps lora_init/ (adapter_config.json with target_modules as find_all_linear_names gave them, and
adapter_model.safetensors, names base_model.model.model.layers.N.<module>.lora_{A,B}.weight), and its golden.json also
every optimizer group's learning rate per step and a "lora" record: the target modules, the trainable parameters, the
optimizer's groups (lr, weight decay, names) and the CRC-32C of the adapters it started from.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "data", "llava_train")

# tokenizer_config.json / special_tokens_map.json of lmsys/vicuna-7b-v1.5 (as make_tokenizer_goldens.py writes them;
# docs/tokenizer.md): the slow LlamaTokenizer with legacy=False, the mode LLaVA HEAD's masking offsets expect.
VICUNA_TOKENIZER_CONFIG = {
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": False, "rstrip": False,
                  "single_word": False},
    "clean_up_tokenization_spaces": False,
    "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False, "normalized": False, "rstrip": False,
                  "single_word": False},
    "legacy": False,
    "model_max_length": 4096,
    "pad_token": None,
    "padding_side": "right",
    "sp_model_kwargs": {},
    "tokenizer_class": "LlamaTokenizer",
    "unk_token": {"__type": "AddedToken", "content": "<unk>", "lstrip": False, "normalized": False, "rstrip": False,
                  "single_word": False},
}
VICUNA_SPECIAL_TOKENS_MAP = {
    "bos_token": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
    "eos_token": {"content": "</s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
    "pad_token": "<unk>",
    "unk_token": {"content": "<unk>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
}

# The demo's CLIP preprocessing: LLaVA-1.5's CLIPImageProcessor at the tower's image size (what llava.c's export
# writes, model/io/export.c).
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

N_SAMPLES = 96  # the first 96 of the demo's conversations (or captions)

# The configurations (issue 24's a-e, stage 1 first). Common to all: the demo's presets' learning rates and
# schedule (stage 1 2e-3, stage 2 1e-3; cosine, warmup_ratio 0.03), model_max_length 256, weight decay 0, HF's
# max_grad_norm 1.0, seed 42, fp32, no gradient checkpointing.
CONFIGS = {
    # d. stage 1: plain template, projector only, square images; one batch of 96 per step. First: stage 2 starts
    # from the mm_projector.bin LLaVA writes here.
    "stage1_full": dict(stage=1, batch=96, ga=1, nproc=0, epochs=10, grouped=False,
                        note="stage 1 (plain, projector only, square), 96 captions, one batch of 96 per step, 10 steps"),
    # a. stage 2, all 96 samples in one batch per step: the order cannot matter.
    "stage2_full": dict(stage=2, batch=96, ga=1, nproc=0, epochs=10, grouped=False,
                        note="stage 2 (vicuna_v1, hf437), 96 conversations, one batch of 96 per step, 10 steps"),
    # b. batches of 8 in LLaVA's modality-grouped order, one process (python, no launcher).
    "stage2_grouped_1proc": dict(stage=2, batch=8, ga=1, nproc=0, epochs=2, grouped=True,
                                 note="stage 2, batches of 8, group_by_modality_length, one process without a "
                                      "launcher, 2 epochs (24 steps)"),
    # c. the same under torchrun, 2 ranks (gloo), then with gradient accumulation 2.
    "stage2_grouped_torchrun2": dict(stage=2, batch=8, ga=1, nproc=2, epochs=2, grouped=True,
                                     note="stage 2, 8 per rank, group_by_modality_length, torchrun 2 ranks (gloo), "
                                          "2 epochs (12 steps)"),
    # torchrun with one process: a one-process launch under a launcher (accelerate 0.21 leaves the sampler's
    # generator alone when there is one process, so the order is the single-process one).
    "stage2_grouped_torchrun1": dict(stage=2, batch=8, ga=1, nproc=1, epochs=2, grouped=True,
                                     note="stage 2 as stage2_grouped_1proc, launched by torchrun with 1 process "
                                          "(gloo)"),
    "stage2_grouped_torchrun2_ga2": dict(stage=2, batch=8, ga=2, nproc=2, epochs=4, grouped=True,
                                         note="stage 2, 8 per rank, gradient accumulation 2, group_by_modality_length, "
                                              "torchrun 2 ranks (gloo), 4 epochs (12 steps)"),
    # e. the release environment: LLaVA 44e0562 under transformers 4.31 (hf431 rules).
    "stage2_full_release": dict(stage=2, batch=96, ga=1, nproc=0, epochs=10, grouped=False, release=True,
                                note="stage 2 as stage2_full, LLaVA 44e0562 (release) under transformers 4.31.0"),
    # f. stage 2 with LoRA (LLaVA's --lora_enable, finetune_lora.sh's recipe scaled to the demo): adapters r 8,
    # alpha 16 (finetune_lora.sh's alpha/r of 2) on what find_all_linear_names gives, dropout 0 (no dropout RNG);
    # the adapters at lr 2e-3 and the projector at mm_projector_lr 2e-4 (finetune_lora.sh's 2e-4 and 2e-5, x10 so
    # the loss moves in 10 steps); the LM frozen. PEFT draws every A from torch's global generator inside train.py
    # (B zero): the adapters as get_peft_model made them are saved (lora_init/) and llava.c starts from them.
    "stage2_lora": dict(stage=2, batch=96, ga=1, nproc=0, epochs=10, grouped=False,
                        lora=dict(r=8, alpha=16, dropout="0.0", lr="2e-3", mm_projector_lr="2e-4"),
                        note="stage 2 with LoRA (--lora_enable, r 8, alpha 16, dropout 0; lr 2e-3, mm_projector_lr "
                             "2e-4), 96 conversations, one batch of 96 per step, 10 steps"),
}


# ------------------------------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli), as common/crc32c.c computes it: the test checks that its demo world is the one these goldens
# were made from.

def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC = _crc_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc_file(path):
    with open(path, "rb") as f:
        return "%08x" % crc32c(f.read())


# ------------------------------------------------------------------------------------------------------------------
# The LoRA adapters as train.py's get_peft_model initialised them, as a PEFT adapter folder: adapter_config.json
# (LoraConfig as PeftConfigMixin.save_pretrained writes it, target_modules the list find_all_linear_names returned)
# and adapter_model.safetensors (get_peft_model_state_dict: base_model.model.model.layers.N.<module>.lora_{A,B}.weight,
# names after LlavaLlamaForCausalLM). Called right after get_peft_model, before the projector exists.

def save_lora_init(peft_model, peft_config, target_list, folder):
    import dataclasses
    import enum
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file
    os.makedirs(folder, exist_ok=True)
    sd = get_peft_model_state_dict(peft_model, save_embedding_layers=False)
    save_file({k: v.detach().clone().contiguous() for k, v in sd.items()},
              os.path.join(folder, "adapter_model.safetensors"), metadata={"format": "pt"})
    cfg = dataclasses.asdict(peft_config)
    for k, v in cfg.items():
        if isinstance(v, set):
            cfg[k] = list(v)
        elif isinstance(v, enum.Enum):
            cfg[k] = v.value
    assert set(cfg["target_modules"]) == set(target_list), (cfg["target_modules"], target_list)
    cfg["target_modules"] = list(target_list)
    cfg["base_model_name_or_path"] = "WORK/lm (the demo's language model)"
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


# ------------------------------------------------------------------------------------------------------------------
# launch mode: inside the training process (one per rank under torchrun).

def launch(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--llava", required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--save-projector", default=None)
    p.add_argument("--save-lora-init", default=None)
    a, rest = p.parse_known_args(argv)
    if rest and rest[0] == "--":
        rest = rest[1:]
    sys.path.insert(0, a.llava)
    sys.argv = ["train.py"] + rest

    import torch
    import transformers
    import accelerate
    from llava.train import train as llava_train
    from llava.model.multimodal_encoder import clip_encoder

    # The one change: keep the vision tower in fp32 (train.py casts it to fp16 when bf16 is off).
    orig_to = clip_encoder.CLIPVisionTower.to

    def to_fp32(self, *args, **kwargs):
        kwargs.pop("dtype", None)
        args = [x for x in args if not isinstance(x, torch.dtype)]
        return orig_to(self, *args, **kwargs)

    clip_encoder.CLIPVisionTower.to = to_fp32

    # train.py's savers (maybe_zero_3) import two names from deepspeed before they look whether a parameter is
    # ZeRO-partitioned (it never is here): empty stand-ins, never called. Their specs have no installed
    # distribution behind them, so transformers and accelerate still find deepspeed unavailable.
    import importlib.machinery
    import types
    for mod in ("deepspeed", "deepspeed.zero", "deepspeed.runtime", "deepspeed.runtime.zero",
                "deepspeed.runtime.zero.partition_parameters"):
        m = types.ModuleType(mod)
        m.__spec__ = importlib.machinery.ModuleSpec(mod, None)
        sys.modules[mod] = m
    sys.modules["deepspeed"].zero = sys.modules["deepspeed.zero"]

    class ZeroParamStatus:  # noqa: the stand-in of deepspeed's enum
        NOT_AVAILABLE = "never used"

    sys.modules["deepspeed.runtime.zero.partition_parameters"].ZeroParamStatus = ZeroParamStatus

    rank = int(os.environ.get("RANK", "0"))
    rec = {"rank": rank, "steps": [], "logs": [], "raw_loss": [], "indices": []}

    # --lora_enable: the target modules find_all_linear_names gives, and the adapters as get_peft_model made them
    # (train.py imports get_peft_model from peft where it uses it, and calls its module's find_all_linear_names).
    orig_fall = llava_train.find_all_linear_names

    def find_all_linear_names(model):
        names = orig_fall(model)
        rec["find_all_linear_names"] = list(names)
        return names

    llava_train.find_all_linear_names = find_all_linear_names
    if a.save_lora_init:
        import peft
        orig_gpm = peft.get_peft_model

        def get_peft_model(model, peft_config, *args, **kwargs):
            pm = orig_gpm(model, peft_config, *args, **kwargs)
            if rank == 0:
                save_lora_init(pm, peft_config, rec["find_all_linear_names"], a.save_lora_init)
            return pm

        peft.get_peft_model = get_peft_model

    class Recorder(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, train_dataloader=None, optimizer=None, **kw):
            # Which generator the sampler draws from once accelerate prepared the loader: None means the global
            # one (seeded by set_seed), a Generator the fresh one accelerate gives it with more than one process.
            bs = getattr(train_dataloader, "batch_sampler", None)
            smp = getattr(getattr(bs, "batch_sampler", bs), "sampler", None)
            rec["sampler"] = {"class": type(smp).__name__, "world_size": args.world_size,
                              "generator": None if getattr(smp, "generator", None) is None else
                              "own torch.Generator (initial seed %d)" % smp.generator.initial_seed()}
            # What trains and in which optimizer groups (LLaVATrainer.create_optimizer) at which peak lr.
            m = model.module if hasattr(model, "module") else model
            names = {id(p): n for n, p in m.named_parameters()}
            rec["trainable"] = [n for n, p in m.named_parameters() if p.requires_grad]
            rec["param_groups"] = [{"lr": g["lr"], "initial_lr": g.get("initial_lr"),
                                    "weight_decay": g["weight_decay"], "n_params": len(g["params"]),
                                    "numel": sum(p.numel() for p in g["params"]),
                                    "names": [names.get(id(p), "?") for p in g["params"]]}
                                   for g in optimizer.param_groups] if optimizer is not None else None
            if a.save_projector and rank == 0:
                from safetensors.torch import save_file
                m = model.module if hasattr(model, "module") else model
                sd = {"model.mm_projector." + k: v.detach().clone().contiguous()
                      for k, v in m.get_model().mm_projector.state_dict().items()}
                save_file(sd, a.save_projector)

        def on_step_begin(self, args, state, control, optimizer=None, **kw):
            rec["steps"].append({"step": state.global_step + 1,
                                 "lr_used": [g["lr"] for g in optimizer.param_groups]})

    orig_init = transformers.Trainer.__init__

    def init(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        self.add_callback(Recorder())

    transformers.Trainer.__init__ = init

    orig_mlse = transformers.Trainer._maybe_log_save_evaluate

    def mlse(self, tr_loss, *args, **kwargs):
        if self.control.should_log and self.state.global_step > self._globalstep_last_logged:
            # The same gather HF does next (every rank takes part), before it rounds.
            v = self._nested_gather(tr_loss.detach().clone()).mean().item()
            rec["raw_loss"].append(v / (self.state.global_step - self._globalstep_last_logged))
        return orig_mlse(self, tr_loss, *args, **kwargs)

    transformers.Trainer._maybe_log_save_evaluate = mlse

    orig_log = transformers.Trainer.log

    def log(self, logs):
        r = orig_log(self, logs)
        rec["logs"].append(dict(logs))  # as logged (HF adds the epoch)
        return r

    transformers.Trainer.log = log

    orig_clip = accelerate.Accelerator.clip_grad_norm_

    def clip(self, parameters, max_norm, norm_type=2):
        n = orig_clip(self, parameters, max_norm, norm_type)
        if rec["steps"]:
            rec["steps"][-1]["grad_norm"] = float(n)
        return n

    accelerate.Accelerator.clip_grad_norm_ = clip

    orig_get = llava_train.LazySupervisedDataset.__getitem__

    def getitem(self, i):
        rec["indices"].append(int(i))
        return orig_get(self, i)

    llava_train.LazySupervisedDataset.__getitem__ = getitem

    rec["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                       "accelerate": accelerate.__version__, "python": sys.version.split()[0]}
    try:
        import tokenizers
        rec["versions"]["tokenizers"] = tokenizers.__version__
    except ImportError:
        pass
    if a.save_lora_init:
        rec["versions"]["peft"] = peft.__version__
    rec["dist_env"] = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    llava_train.train()
    import torch.distributed as dist
    rec["distributed"] = dist.is_available() and dist.is_initialized()
    rec["world_size"] = dist.get_world_size() if rec["distributed"] else 1
    with open(a.record, "w") as f:
        json.dump(rec, f)


# ------------------------------------------------------------------------------------------------------------------
# driver

def prepare(work, demo):
    """The demo's files as the folders train.py takes."""
    lm, clip = os.path.join(work, "lm"), os.path.join(work, "clip")
    for d in (lm, clip):
        os.makedirs(d, exist_ok=True)
    from safetensors.numpy import load_file, save_file
    for src, dst in (("lm", lm), ("clip", clip)):
        shutil.copy(os.path.join(demo, src, "config.json"), os.path.join(dst, "config.json"))
        # The same tensors; transformers 4.37 wants the {"format": "pt"} metadata llava.c does not write.
        save_file(load_file(os.path.join(demo, src, "model.safetensors")), os.path.join(dst, "model.safetensors"),
                  metadata={"format": "pt"})
    shutil.copy(os.path.join(demo, "tokenizer.model"), os.path.join(lm, "tokenizer.model"))
    with open(os.path.join(lm, "tokenizer_config.json"), "w") as f:
        json.dump(VICUNA_TOKENIZER_CONFIG, f, indent=2)
    with open(os.path.join(lm, "special_tokens_map.json"), "w") as f:
        json.dump(VICUNA_SPECIAL_TOKENS_MAP, f, indent=2)
    with open(os.path.join(demo, "clip", "config.json")) as f:
        S = json.load(f)["image_size"]
    pp = {"crop_size": {"height": S, "width": S}, "do_center_crop": True, "do_convert_rgb": True,
          "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": CLIP_MEAN,
          "image_processor_type": "CLIPImageProcessor", "image_std": CLIP_STD, "resample": 3,
          "rescale_factor": 1 / 255, "size": {"shortest_edge": S}}
    with open(os.path.join(clip, "preprocessor_config.json"), "w") as f:
        json.dump(pp, f, indent=2)
    for name in ("train_qa", "train_captions"):
        with open(os.path.join(demo, "data", name + ".json")) as f:
            d = json.load(f)
        with open(os.path.join(work, "%s_%d.json" % (name, N_SAMPLES)), "w") as f:
            json.dump(d[:N_SAMPLES], f)
    return lm, clip


def train_args(cfg, work, demo, lm, clip, out_dir, adapter):
    stage2 = cfg["stage"] == 2
    args = [
        "--model_name_or_path", lm,
        "--version", "v1" if stage2 else "plain",
        "--data_path", os.path.join(work, "%s_%d.json" % ("train_qa" if stage2 else "train_captions", N_SAMPLES)),
        "--image_folder", os.path.join(demo, "data"),
        "--vision_tower", clip,
        "--mm_projector_type", "mlp2x_gelu",
        "--mm_vision_select_layer", "-2",
        "--mm_use_im_start_end", "False",
        "--mm_use_im_patch_token", "False",
        "--bf16", "False",
        "--fp16", "False",
        "--output_dir", out_dir,
        "--num_train_epochs", str(cfg["epochs"]),
        "--per_device_train_batch_size", str(cfg["batch"]),
        "--gradient_accumulation_steps", str(cfg["ga"]),
        "--evaluation_strategy", "no",
        "--save_strategy", "no",
        "--learning_rate", cfg["lora"]["lr"] if cfg.get("lora") else "1e-3" if stage2 else "2e-3",
        "--weight_decay", "0.",
        "--warmup_ratio", "0.03",
        "--lr_scheduler_type", "cosine",
        "--max_grad_norm", "1.0",
        "--logging_steps", "1",
        "--model_max_length", "256",
        "--gradient_checkpointing", "False",
        "--dataloader_num_workers", "0",
        "--lazy_preprocess", "True",
        "--report_to", "none",
        "--seed", "42",
    ]
    if stage2:
        args += ["--pretrain_mm_mlp_adapter", adapter, "--image_aspect_ratio", "pad",
                 "--group_by_modality_length", str(cfg["grouped"])]
    else:
        args += ["--tune_mm_mlp_adapter", "True"]
    if cfg.get("lora"):
        lo = cfg["lora"]
        args += ["--lora_enable", "True", "--lora_r", str(lo["r"]), "--lora_alpha", str(lo["alpha"]),
                 "--lora_dropout", lo["dropout"], "--mm_projector_lr", lo["mm_projector_lr"]]
    if cfg["nproc"]:
        args += ["--ddp_backend", "gloo"]
    return args


def llava_sets(name, cfg, rec0=None):
    """The llava.c overrides that mirror the run (relative to the world the test makes with demo_make_world)."""
    stage2 = cfg["stage"] == 2
    ranks = max(cfg["nproc"], 1)
    sets = [
        "model.llm=@WORLD@/lm", "model.vision_tower=@WORLD@/clip", "model.tokenizer=@WORLD@/tokenizer.model",
        "data.image_folder=@WORLD@/data", "data.model_max_length=256", "data.tokenizer_mode=%s" %
        ("hf431" if cfg.get("release") else "hf437"),
        "data.truncate_after_splice=%s" % ("false" if cfg.get("release") else "true"),
        "data.dataloader_num_workers=1",
        "train.device=cpu", "train.num_train_epochs=%d" % cfg["epochs"],
        "train.per_device_train_batch_size=%d" % cfg["batch"],
        "train.gradient_accumulation_steps=%d" % cfg["ga"],
        # One process standing for the ranks: the same global batch and the same "virtual ranks" (ranks x
        # accumulation) the grouped sampler and the batch dealing see.
        "train.global_batch_size=%d" % (cfg["batch"] * cfg["ga"] * ranks),
        "train.learning_rate=%s" % (cfg["lora"]["lr"] if cfg.get("lora") else "1e-3" if stage2 else "2e-3"),
        "train.weight_decay=0", "train.warmup_ratio=0.03", "train.lr_scheduler_type=cosine",
        "train.max_grad_norm=1.0", "train.seed=42", "train.gradient_checkpointing=false",
        "train.loss_normalization=llava", "checkpoint.save_steps=1000000", "log.logging_steps=1",
    ]
    if stage2:
        sets += ["data.data_path=@WORLD@/data/train_qa.json", "data.template=vicuna_v1",
                 "data.image_aspect_ratio=pad", "train.stage=2",
                 'train.trainable=["projector","lora"]' if cfg.get("lora") else 'train.trainable=["projector","lm"]',
                 "model.pretrain_mm_mlp_adapter=@DATA@/../stage1_full/mm_projector.bin",
                 "data.group_by_modality_length=%s" % ("true" if cfg["grouped"] else "false")]
        if cfg.get("lora"):
            # LLaVA's run: the adapters on find_all_linear_names' modules, the projector (built after
            # get_peft_model, so trainable) at mm_projector_lr; llava.c starts from the adapters it drew.
            lo = cfg["lora"]
            order = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
            mods = sorted(rec0["find_all_linear_names"], key=lambda x: order.index(x) if x in order else len(order))
            sets += ["lora.enabled=true", "lora.r=%d" % lo["r"], "lora.alpha=%d" % lo["alpha"],
                     "lora.dropout=%s" % lo["dropout"],
                     "lora.target_modules=%s" % json.dumps(mods, separators=(",", ":")),
                     "lora.init_adapter=@DATA@/lora_init", "train.mm_projector_lr=%s" % lo["mm_projector_lr"]]
        if cfg["grouped"]:
            sets += ["data.sampler_order=%s" % ("llava-single-process" if ranks == 1 else "llava-distributed")]
    else:
        sets += ["data.data_path=@WORLD@/data/train_captions.json", "data.template=plain",
                 "data.image_aspect_ratio=square", "train.stage=1", 'train.trainable=["projector"]',
                 "model.pretrain_mm_mlp_adapter=@DATA@/projector_init.safetensors"]
    return sets


def run_config(name, cfg, a, work, lm, clip):
    out = os.path.join(OUT, name)
    os.makedirs(out, exist_ok=True)
    run_dir = os.path.join(work, "run_" + name)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    rec_base = os.path.join(run_dir, "record")
    adapter = os.path.join(OUT, "stage1_full", "mm_projector.bin")
    if cfg["stage"] == 2 and not os.path.exists(adapter):
        sys.exit("%s: run stage1_full first (stage 2 starts from its mm_projector.bin)" % name)
    python = a.python_431 if cfg.get("release") else sys.executable
    llava_src = a.llava_release if cfg.get("release") else a.llava
    if not python or not llava_src:
        sys.exit("%s needs --python-431 and --llava-release" % name)
    targs = train_args(cfg, work, a.demo, lm, clip, os.path.join(run_dir, "out"), adapter)
    me = os.path.abspath(__file__)
    extra = ["--save-projector", os.path.join(out, "projector_init.safetensors")] if cfg["stage"] == 1 else []
    if cfg.get("lora"):
        shutil.rmtree(os.path.join(out, "lora_init"), ignore_errors=True)
        extra += ["--save-lora-init", os.path.join(out, "lora_init")]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", TOKENIZERS_PARALLELISM="false")
    if cfg["nproc"]:
        torchrun = os.path.join(os.path.dirname(python), "torchrun")
        cmd = [torchrun, "--nproc_per_node", str(cfg["nproc"]), "--master_port", str(a.port), me, "launch",
               "--llava", llava_src, "--record", rec_base + ".%d.json"]
    else:
        cmd = [python, me, "launch", "--llava", llava_src, "--record", rec_base + ".0.json"]
    cmd += extra + ["--"] + targs
    print("+", " ".join(cmd), flush=True)
    log_path = os.path.join(run_dir, "train.log")
    with open(log_path, "w") as logf:
        r = subprocess.run(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT)
    with open(log_path) as f:
        log_text = f.read()
    if r.returncode != 0:
        sys.stderr.write(log_text[-6000:])
        sys.exit("%s: train.py failed (%d)" % (name, r.returncode))
    recs = []
    for k in range(max(cfg["nproc"], 1)):
        with open(rec_base + ".%d.json" % k) as f:
            recs.append(json.load(f))
    r0 = recs[0]
    train_logs = [l for l in r0["logs"] if "loss" in l]
    steps = []
    ranks = max(cfg["nproc"], 1)
    per_step = cfg["batch"] * cfg["ga"]
    for i, (lg, st) in enumerate(zip(train_logs, r0["steps"])):
        assert st["step"] == i + 1
        samples = [rec["indices"][i * per_step:(i + 1) * per_step] for rec in recs]
        s = {"step": i + 1, "epoch": lg["epoch"], "loss": lg["loss"], "loss_unrounded": r0["raw_loss"][i],
             "learning_rate_logged": lg["learning_rate"], "lr": st["lr_used"][0],
             "grad_norm": st.get("grad_norm"), "samples": samples if ranks > 1 else samples[0]}
        if cfg.get("lora"):  # every optimizer group's lr (LLaVATrainer.create_optimizer's four; the projector's last)
            s["lr_groups"] = st["lr_used"]
        steps.append(s)
    assert len(steps) == len(r0["steps"]) == len(train_logs), (len(steps), len(r0["steps"]), len(train_logs))
    mismatches = log_text.count("WARNING: tokenization mismatch")
    demo_files = ["lm/model.safetensors", "lm/config.json", "clip/model.safetensors", "clip/config.json",
                  "tokenizer.model"]
    golden = {
        "config": name,
        "description": cfg["note"],
        "llava_commit": a.llava_commit_release if cfg.get("release") else a.llava_commit,
        "versions": r0["versions"],
        "distributed": r0["distributed"], "world_size": r0["world_size"], "dist_env_rank0": r0["dist_env"],
        "sampler": r0.get("sampler"),
        "launch": ("torchrun --nproc_per_node %d" % cfg["nproc"]) if cfg["nproc"] else "python (no launcher)",
        "train_py_args": " ".join(x.replace(a.demo, "DEMO").replace(work, "WORK").replace(ROOT + "/", "")
                                  for x in targs),
        "outside_patch": "CLIPVisionTower.to keeps fp32 (train.py L920 casts the tower to fp16 when bf16 is off)",
        "n_samples": N_SAMPLES,
        "tokenization_mismatch_warnings": mismatches,
        "demo_crc32c": {f: crc_file(os.path.join(a.demo, f)) for f in demo_files},
        # The starting projector: stage 1's as torch initialised it inside train.py (torch seeds its global
        # generator from the OS at start-up, so every run of train.py draws another), stage 2's the
        # mm_projector.bin that run wrote. Regenerating stage1_full alone leaves stage 2 goldens stale: the test
        # checks this checksum.
        "start_projector": os.path.relpath(adapter if cfg["stage"] == 2 else
                                           os.path.join(out, "projector_init.safetensors"), ROOT),
        "start_projector_crc32c": crc_file(adapter if cfg["stage"] == 2 else
                                           os.path.join(out, "projector_init.safetensors")),
        "loss_logged_decimals": 4,
        "steps": steps,
    }
    if cfg.get("lora"):
        golden["lora"] = {
            "find_all_linear_names": r0["find_all_linear_names"],
            "init_adapter": os.path.relpath(os.path.join(out, "lora_init"), ROOT),
            "init_adapter_crc32c": crc_file(os.path.join(out, "lora_init", "adapter_model.safetensors")),
            "trainable": r0["trainable"],
            "param_groups": r0["param_groups"],
        }
    head = json.dumps({k: v for k, v in golden.items() if k != "steps"}, indent=1)
    with open(os.path.join(out, "golden.json"), "w") as f:  # one line per step
        f.write(head[:-2] + ',\n "steps": [\n' + ",\n".join("  " + json.dumps(s) for s in steps) + "\n ]\n}\n")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"config": name, "world_train_samples": N_SAMPLES, "set": llava_sets(name, cfg, r0)}, f, indent=1)
        f.write("\n")
    if cfg["stage"] == 1:
        # LLaVA's own stage-1 output: stage 2 starts from it.
        shutil.copy(os.path.join(run_dir, "out", "mm_projector.bin"), os.path.join(out, "mm_projector.bin"))
    print("%s: %d steps, first loss %s, last %s, %d mismatch warnings" %
          (name, len(steps), steps[0]["loss"], steps[-1]["loss"], mismatches), flush=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "launch":
        argv = sys.argv[2:]
        # torchrun passes every rank the same argv: each writes the record of its RANK.
        if "RANK" in os.environ:
            argv = [x.replace(".%d.json", ".%s.json" % os.environ["RANK"]) for x in argv]
        return launch(argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llava", required=True, help="LLaVA work tree at c121f04")
    p.add_argument("--llava-commit", default="c121f04")
    p.add_argument("--llava-release", default=None, help="LLaVA work tree at 44e0562 (release configuration)")
    p.add_argument("--llava-commit-release", default="44e0562")
    p.add_argument("--python-431", default=None, help="python of a venv with transformers 4.31 (release)")
    p.add_argument("--demo", required=True, help="folder `llava demo --fast --out` wrote")
    p.add_argument("--configs", default=",".join(k for k in CONFIGS if not CONFIGS[k].get("release")))
    p.add_argument("--port", type=int, default=29533)
    p.add_argument("--work", default=None)
    a = p.parse_args()
    a.demo = os.path.abspath(a.demo)
    work = a.work or tempfile.mkdtemp(prefix="llava_train_goldens_")
    os.makedirs(work, exist_ok=True)
    lm, clip = prepare(work, a.demo)
    for name in a.configs.split(","):
        run_config(name, CONFIGS[name], a, work, lm, clip)


if __name__ == "__main__":
    main()
