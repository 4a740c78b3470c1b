#pragma once
// Configuration: every parameter is declared once (ParamDecl: dotted key, type, unit, default, doc,
// allowed values). A Config is resolved in layers -- declared defaults, a preset, user files, then
// `--set key=value` overrides -- and every value remembers where it came from. Unknown keys, wrong
// types, missing units and out-of-range values are UserErrors naming the file, the key path and what
// is allowed.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "trnsim/core/units.h"

namespace YAML {
class Node;
}

namespace trnsim {

enum class ParamType { integer, real, boolean, text, choice, frequency, bandwidth, bytes, duration, energy, power };

const char* param_type_name(ParamType t);

struct ParamDecl {
    std::string key;  // dotted path, e.g. "chip.core.tensor_engine.rows"
    ParamType type = ParamType::integer;
    std::string doc;                           // one line: what it is, its unit when not in the value
    std::optional<std::string> default_value;  // nullopt: a preset or the user must give it
    std::string default_source;                // where the default comes from (source tag or "assumption")
    std::vector<std::string> choices;          // for ParamType::choice
    double min = -1e300;                       // inclusive range on the value in base units
    double max = 1e300;
};

// All declared parameters, in declaration order. Models declare theirs through declare().
class ParamRegistry {
public:
    void declare(ParamDecl decl);
    const ParamDecl* find(const std::string& key) const;
    const std::vector<ParamDecl>& all() const { return m_decls; }
    // Declared keys under a prefix, for "allowed keys" messages.
    std::vector<std::string> keys_under(const std::string& prefix) const;

private:
    std::vector<ParamDecl> m_decls;
    std::map<std::string, std::size_t> m_index;
};

struct ConfigValue {
    std::string text;    // as given, with its unit
    std::string source;  // "default [tag]", "preset trn2 [TRN2]", "path/to/file.yaml [tag]", "--set"
};

class Config {
public:
    explicit Config(const ParamRegistry& registry);

    // Layering. `origin` names the file or preset for error messages and sources.
    void apply_defaults();
    void apply_yaml_text(const std::string& yaml_text, const std::string& origin);
    void apply_yaml_file(const std::string& path);
    void apply_override(const std::string& assignment);  // "dotted.key=value"
    void set(const std::string& key, const std::string& text, const std::string& source);
    // Checks that every declared parameter without a default has a value; `context` prefixes the error.
    void check_complete(const std::string& context = "") const;

    bool has(const std::string& key) const;
    const ConfigValue& raw(const std::string& key) const;
    const std::map<std::string, ConfigValue>& values() const { return m_values; }
    const ParamRegistry& registry() const { return m_registry; }

    std::int64_t get_int(const std::string& key) const;
    double get_real(const std::string& key) const;
    bool get_bool(const std::string& key) const;
    std::string get_text(const std::string& key) const;
    Frequency get_frequency(const std::string& key) const;
    Bandwidth get_bandwidth(const std::string& key) const;
    Bytes get_bytes(const std::string& key) const;
    Duration get_duration(const std::string& key) const;
    Energy get_energy(const std::string& key) const;
    Power get_power(const std::string& key) const;

private:
    const ParamDecl& decl_for(const std::string& key, const std::string& origin) const;
    void validate(const ParamDecl& decl, const std::string& text, const std::string& origin) const;

    const ParamRegistry& m_registry;
    std::map<std::string, ConfigValue> m_values;
};

// Presets embedded in the binary at build time: "chips/trn2" -> YAML text.
struct EmbeddedPreset {
    const char* name;  // path under configs/ or models/ without ".yaml", e.g. "chips/trn2"
    const char* text;
};
const std::vector<EmbeddedPreset>& embedded_presets();
const EmbeddedPreset* find_preset(const std::string& kind, const std::string& name);  // kind "chips"
std::vector<std::string> preset_names(const std::string& kind);

// A preset name or a YAML file path: applies it (and, recursively, its `base:`) to the config.
void apply_preset_or_file(Config& config, const std::string& kind, const std::string& name_or_path);

// The text of a YAML file the user named (`what`: "config file", "model file"); UserError naming it when it
// cannot be read or is a directory.
std::string read_yaml_file(const std::string& path, const std::string& what);
// A YAML document's root, parsed; UserError naming `origin` and the position on a syntax error, and on a key
// given twice in any mapping (YAML forbids it; a parser would keep one silently).
YAML::Node parse_yaml(const std::string& text, const std::string& origin);

}  // namespace trnsim
