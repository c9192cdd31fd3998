// hf_model.h — Hugging Face model folders (config.json + model.safetensors, or shards
// listed in model.safetensors.index.json) <-> our model. doc/hf-interop.md lists the
// architectures and config.json fields accepted, and what is refused.
#ifndef DPO_HF_MODEL_H
#define DPO_HF_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "dpo/config.h"
#include "dpo/model.h"

// Reads <dir>/config.json into mc. Refuses unsupported architectures and fields
// (rope_scaling, sliding windows in use, MoE, o_proj / MLP biases ...) with a message
// naming the field. Returns 0, or -1 with a message in err.
int hf_read_config(const char *dir, dpo_model_config_t *mc, char *err, size_t err_len);

// Loads this rank's slab of every tensor of model's layout from <dir>'s safetensors
// file(s) (F32, BF16 or F16, converted to fp32). Shapes are checked against the
// layout. Collective-safe: each rank opens the files on its own and reads only the
// bytes of its slabs; no communication. Returns 0, or -1 with a message in err.
int hf_load_model(const char *dir, dpo_model_t *model, char *err, size_t err_len);

// True when path is a directory holding a config.json.
bool hf_is_model_dir(const char *path);

// hf_read_config on config.json text already in memory; `what` names it in messages.
int hf_parse_config(const char *json_text, const char *what, dpo_model_config_t *mc, char *err,
                    size_t err_len);

#endif
