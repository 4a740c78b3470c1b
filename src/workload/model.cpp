#include "trnsim/workload/model.h"

#include <fmt/format.h>

#include "trnsim/core/error.h"

namespace trnsim::workload {

const char* arch_name(Arch a) {
    return a == Arch::decoder ? "decoder" : "encoder";
}
const char* norm_name(Norm n) {
    return n == Norm::rmsnorm ? "rmsnorm" : "layernorm";
}
const char* activation_name(Activation a) {
    return a == Activation::swiglu ? "swiglu" : "gelu";
}
const char* position_name(Position p) {
    return p == Position::rope ? "rope" : "learned";
}

void ModelSpec::declare(ParamRegistry& r) {
    const double big = 1 << 30;
    r.declare({"name", ParamType::text, "model name", std::nullopt, "", {}});
    r.declare(
        {"source", ParamType::text, "paper or model card the architecture numbers come from", std::nullopt, "", {}});
    r.declare({"arch",
               ParamType::choice,
               "decoder (causal LM, LM head) or encoder (bidirectional, MLM head)",
               std::nullopt,
               "",
               {"decoder", "encoder"}});
    r.declare({"layers", ParamType::integer, "transformer layers L", std::nullopt, "", {}, 1, 100000});
    r.declare({"hidden", ParamType::integer, "model width h", std::nullopt, "", {}, 1, big});
    r.declare({"heads", ParamType::integer, "query heads a (h must be divisible by a)", std::nullopt, "", {}, 1, big});
    r.declare({"kv_heads",
               ParamType::integer,
               "key/value heads (= heads for MHA; must divide heads)",
               std::nullopt,
               "",
               {},
               1,
               big});
    r.declare({"ffn_hidden",
               ParamType::integer,
               "MLP inner width f (per projection for SwiGLU)",
               std::nullopt,
               "",
               {},
               1,
               big});
    r.declare({"vocab", ParamType::integer, "vocabulary size V", std::nullopt, "", {}, 1, big});
    r.declare({"max_seq",
               ParamType::integer,
               "longest trained sequence (size of a learned position table)",
               std::nullopt,
               "",
               {},
               1,
               big});
    r.declare({"norm", ParamType::choice, "normalisation", std::nullopt, "", {"rmsnorm", "layernorm"}});
    r.declare({"activation", ParamType::choice, "MLP type", std::nullopt, "", {"swiglu", "gelu"}});
    r.declare({"position", ParamType::choice, "position encoding", std::nullopt, "", {"rope", "learned"}});
    r.declare({"tied_embeddings", ParamType::boolean, "output head shares the token embedding", std::nullopt, "", {}});
    r.declare({"bias", ParamType::boolean, "linear layers have biases", "false", "(Llama-style)", {}});
    r.declare({"dropout",
               ParamType::boolean,
               "attention and hidden dropout applied in training",
               "false",
               "(Llama-style)",
               {}});
}

namespace {

[[noreturn]] void fail(const std::string& origin, const std::string& key, std::int64_t value, const std::string& why,
                       const std::string& allowed) {
    throw UserError(fmt::format("{}: {} = {}: {}; allowed: {}", origin, key, value, why, allowed));
}

std::string divisors_of(std::int64_t n) {
    std::string out;
    for (std::int64_t d = 1; d <= n; ++d) {
        if (n % d == 0) out += (out.empty() ? "" : ", ") + std::to_string(d);
        if (out.size() > 120) return out + ", ...";
    }
    return out;
}

}  // namespace

ModelSpec ModelSpec::from_config(const Config& c, const std::string& origin) {
    c.check_complete(origin);
    ModelSpec m;
    m.origin = origin;
    m.name = c.get_text("name");
    m.source = c.get_text("source");
    m.arch = c.get_text("arch") == "decoder" ? Arch::decoder : Arch::encoder;
    m.layers = c.get_int("layers");
    m.hidden = c.get_int("hidden");
    m.heads = c.get_int("heads");
    m.kv_heads = c.get_int("kv_heads");
    m.ffn_hidden = c.get_int("ffn_hidden");
    m.vocab = c.get_int("vocab");
    m.max_seq = c.get_int("max_seq");
    m.norm = c.get_text("norm") == "rmsnorm" ? Norm::rmsnorm : Norm::layernorm;
    m.activation = c.get_text("activation") == "swiglu" ? Activation::swiglu : Activation::gelu;
    m.position = c.get_text("position") == "rope" ? Position::rope : Position::learned;
    m.tied_embeddings = c.get_bool("tied_embeddings");
    m.bias = c.get_bool("bias");
    m.dropout = c.get_bool("dropout");
    if (m.hidden % m.heads != 0) {
        fail(origin, "heads", m.heads, fmt::format("hidden ({}) is not divisible by heads", m.hidden),
             "a divisor of hidden: " + divisors_of(m.hidden));
    }
    if (m.kv_heads > m.heads || m.heads % m.kv_heads != 0) {
        fail(origin, "kv_heads", m.kv_heads, fmt::format("heads ({}) is not divisible by kv_heads", m.heads),
             "a divisor of heads: " + divisors_of(m.heads));
    }
    if (m.position == Position::rope && m.head_dim() % 2 != 0) {
        fail(origin, "heads", m.heads,
             fmt::format("rope needs an even head dimension, hidden/heads = {}", m.head_dim()),
             "heads such that hidden/heads is even");
    }
    return m;
}

const ParamRegistry& model_param_registry() {
    static const ParamRegistry registry = [] {
        ParamRegistry r;
        ModelSpec::declare(r);
        return r;
    }();
    return registry;
}

ModelSpec load_model(const std::string& name_or_path) {
    Config c(model_param_registry());
    c.apply_defaults();
    apply_preset_or_file(c, "models", name_or_path);
    const bool is_preset = find_preset("models", name_or_path) != nullptr;
    return ModelSpec::from_config(c, is_preset ? "preset models/" + name_or_path : name_or_path);
}

ModelSpec load_model_text(const std::string& yaml_text, const std::string& origin) {
    Config c(model_param_registry());
    c.apply_defaults();
    c.apply_yaml_text(yaml_text, origin);
    return ModelSpec::from_config(c, origin);
}

std::vector<std::string> model_preset_names() {
    return preset_names("models");
}

ParamCount parameter_count(const ModelSpec& m) {
    const double h = static_cast<double>(m.hidden);
    const double kvd = static_cast<double>(m.kv_dim());
    const double f = static_cast<double>(m.ffn_hidden);
    const double v = static_cast<double>(m.vocab);
    const double norm = m.norm == Norm::rmsnorm ? h : 2 * h;  // gamma (+ beta)
    const double b = m.bias ? 1.0 : 0.0;
    ParamCount p;
    // Q and O are h x h, K and V are h x kv_dim.
    p.attention = 2 * h * h + 2 * h * kvd + b * (2 * h + 2 * kvd);
    const double mlp_weights = m.activation == Activation::swiglu ? 3 * h * f : 2 * h * f;
    const double mlp_biases = m.activation == Activation::swiglu ? 2 * f + h : f + h;
    p.mlp = mlp_weights + b * mlp_biases;
    p.layer_norms = 2 * norm;
    p.per_layer = p.attention + p.mlp + p.layer_norms;
    p.embedding = v * h + (m.position == Position::learned ? static_cast<double>(m.max_seq) * h : 0.0);
    // Decoder: the final norm after the last layer. Encoder (BERT, post-LN): the norm after the embedding;
    // the same count.
    p.final_norm = norm;
    double head_matmul = v * h;  // logits GEMM, also when the weight is the tied embedding
    if (m.arch == Arch::encoder) {
        // MLM head (BERT): dense h x h (+ bias), norm, then the vocabulary projection (tied or not) + bias V.
        p.head = h * h + b * h + norm + b * v + (m.tied_embeddings ? 0.0 : v * h);
        head_matmul += h * h;
    } else {
        p.head = m.tied_embeddings ? 0.0 : v * h;
    }
    p.total = p.embedding + static_cast<double>(m.layers) * p.per_layer + p.final_norm + p.head;
    p.matmul = static_cast<double>(m.layers) * (2 * h * h + 2 * h * kvd + mlp_weights) + head_matmul;
    return p;
}

}  // namespace trnsim::workload
