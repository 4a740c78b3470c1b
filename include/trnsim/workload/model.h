#pragma once
// Transformer model descriptions (the `models/` presets and user YAML files) and their parameter counts.
// A model is architecture only: no hardware, no parallelism (training.h). Keys, allowed values and the
// sources of the presets: docs/workload.md.

#include <cstdint>
#include <string>
#include <vector>

#include "trnsim/core/config.h"

namespace trnsim::workload {

enum class Arch { decoder, encoder };    // causal LM with an LM head | BERT-style encoder with an MLM head
enum class Norm { rmsnorm, layernorm };  // RMSNorm (gamma) | LayerNorm (gamma, beta)
enum class Activation { swiglu, gelu };  // SwiGLU MLP (gate, up, down) | GELU MLP (up, down)
enum class Position { rope, learned };   // rotary (no parameters) | learned absolute embeddings

const char* arch_name(Arch a);
const char* norm_name(Norm n);
const char* activation_name(Activation a);
const char* position_name(Position p);

struct ModelSpec {
    std::string name;    // preset name or the file's `name:`
    std::string source;  // paper / model card the numbers come from
    std::string origin;  // "preset models/llama3-8b" or the file path (for error messages)
    Arch arch = Arch::decoder;
    std::int64_t layers = 0;
    std::int64_t hidden = 0;      // h, the model width
    std::int64_t heads = 0;       // a, query heads
    std::int64_t kv_heads = 0;    // key/value heads (== heads: MHA; < heads: GQA)
    std::int64_t ffn_hidden = 0;  // f, MLP inner width (per projection for SwiGLU)
    std::int64_t vocab = 0;       // V
    std::int64_t max_seq = 0;     // longest trained sequence (the learned position table size)
    Norm norm = Norm::rmsnorm;
    Activation activation = Activation::swiglu;
    Position position = Position::rope;
    bool tied_embeddings = false;  // LM head shares the token embedding matrix
    bool bias = false;             // linear layers have biases (GPT-3, BERT) or not (Llama)
    bool dropout = false;          // attention and hidden dropout in training (masks cost memory and time)

    std::int64_t head_dim() const { return hidden / heads; }
    std::int64_t kv_dim() const { return kv_heads * head_dim(); }  // width of K (and of V)
    bool causal() const { return arch == Arch::decoder; }

    // Declares the model keys (name, source, arch, layers, ...) into `registry`.
    static void declare(ParamRegistry& registry);
    // Builds and cross-checks (hidden % heads, heads % kv_heads, ...). Throws UserError naming the origin,
    // the key and what is allowed.
    static ModelSpec from_config(const Config& config, const std::string& origin);
};

const ParamRegistry& model_param_registry();

// A preset name (`llama3-8b`, see model_preset_names()) or a YAML file path (anything with '/', .yaml or
// .yml). A file may name a `base:` preset or file and override its keys. Throws UserError.
ModelSpec load_model(const std::string& name_or_path);
// Parses YAML text directly (tests, CLI); `origin` names it in errors.
ModelSpec load_model_text(const std::string& yaml_text, const std::string& origin);
std::vector<std::string> model_preset_names();

// Parameter count from the architecture, by part. Biases and norm parameters are counted.
struct ParamCount {
    double embedding = 0;    // token embedding (+ learned positions)
    double per_layer = 0;    // one transformer layer: attention + MLP + its norms (+ biases)
    double attention = 0;    // of per_layer: Q, K, V, O weights (+ biases)
    double mlp = 0;          // of per_layer: MLP weights (+ biases)
    double layer_norms = 0;  // of per_layer: the two norms
    double final_norm = 0;   // after the last layer
    double head = 0;         // LM head when untied (0 when tied), or the MLM head's transform, norm and bias
    double total = 0;
    // Weights that multiply activations in GEMMs (the N of "6 N per token"): layers' projections plus the
    // LM head (h x V, also when tied). Excludes embeddings lookups, position tables, norms and biases.
    double matmul = 0;
};
ParamCount parameter_count(const ModelSpec& model);

}  // namespace trnsim::workload
