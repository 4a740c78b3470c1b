#include "trnsim/core/config.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "trnsim/core/error.h"

namespace trnsim {

const char* param_type_name(ParamType t) {
    switch (t) {
        case ParamType::integer: return "integer";
        case ParamType::real: return "number";
        case ParamType::boolean: return "bool";
        case ParamType::text: return "text";
        case ParamType::choice: return "choice";
        case ParamType::frequency: return "frequency";
        case ParamType::bandwidth: return "bandwidth";
        case ParamType::bytes: return "size";
        case ParamType::duration: return "duration";
        case ParamType::energy: return "energy";
        case ParamType::power: return "power";
    }
    return "?";
}

void ParamRegistry::declare(ParamDecl decl) {
    if (m_index.count(decl.key)) throw std::logic_error("parameter declared twice: " + decl.key);
    m_index[decl.key] = m_decls.size();
    m_decls.push_back(std::move(decl));
}

const ParamDecl* ParamRegistry::find(const std::string& key) const {
    auto it = m_index.find(key);
    return it == m_index.end() ? nullptr : &m_decls[it->second];
}

std::vector<std::string> ParamRegistry::keys_under(const std::string& prefix) const {
    std::vector<std::string> out;
    for (const auto& d : m_decls) {
        if (d.key.compare(0, prefix.size(), prefix) == 0) out.push_back(d.key);
    }
    return out;
}

namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
    std::string out;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += sep;
        out += items[i];
    }
    return out;
}

// The range of a unit parameter in its own unit, e.g. " from 1MHz to 100GHz"; empty when unbounded.
std::string unit_range_text(const ParamDecl& d) {
    std::function<std::string(double)> show;
    switch (d.type) {
        case ParamType::frequency: show = [](double v) { return to_string(Frequency{v}); }; break;
        case ParamType::bandwidth: show = [](double v) { return to_string(Bandwidth{v}); }; break;
        case ParamType::bytes: show = [](double v) { return to_string(Bytes{static_cast<std::uint64_t>(v)}); }; break;
        case ParamType::duration: show = [](double v) { return to_string(Duration{v}); }; break;
        case ParamType::energy: show = [](double v) { return to_string(Energy{v}); }; break;
        case ParamType::power: show = [](double v) { return to_string(Power{v}); }; break;
        default: return "";
    }
    if (d.min > 0 && d.max < 1e300) return " from " + show(d.min) + " to " + show(d.max);
    if (d.min > 0) return " of at least " + show(d.min);
    if (d.max < 1e300) return " up to " + show(d.max);
    return "";
}

std::string allowed_text(const ParamDecl& d) {
    switch (d.type) {
        case ParamType::integer: {
            std::string r = "an integer";
            if (d.min > -1e300 && d.max < 1e300)
                r += fmt::format(" in [{}, {}]", format_number(d.min), format_number(d.max));
            else if (d.min > -1e300)
                r += fmt::format(" >= {}", format_number(d.min));
            return r;
        }
        case ParamType::real: return "a number";
        case ParamType::boolean: return "true or false";
        case ParamType::text: return "text";
        case ParamType::choice: return "one of " + join(d.choices);
        case ParamType::frequency:
            return std::string("a frequency with a unit (") + frequency_units() + ")" + unit_range_text(d);
        case ParamType::bandwidth:
            return std::string("a bandwidth with a unit (") + bandwidth_units() + ")" + unit_range_text(d);
        case ParamType::bytes: return std::string("a size with a unit (") + bytes_units() + ")" + unit_range_text(d);
        case ParamType::duration:
            return std::string("a duration with a unit (") + duration_units() + ")" + unit_range_text(d);
        case ParamType::energy:
            return std::string("an energy with a unit (") + energy_units() + ")" + unit_range_text(d);
        case ParamType::power: return std::string("a power with a unit (") + power_units() + ")" + unit_range_text(d);
    }
    return "?";
}

bool parse_int(const std::string& text, std::int64_t& out) {
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && p == text.data() + text.size();
}

bool parse_real(const std::string& text, double& out) {
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && p == text.data() + text.size();
}

// Value of a typed parameter in its base unit (Hz, B/s, B, s), for range checks. Throws UnitError.
double base_value(const ParamDecl& d, const std::string& text) {
    switch (d.type) {
        case ParamType::frequency: return parse_frequency(text).hz;
        case ParamType::bandwidth: return parse_bandwidth(text).bytes_per_s;
        case ParamType::bytes: return static_cast<double>(parse_bytes(text).count);
        case ParamType::duration: return parse_duration(text).seconds;
        default: return 0;
    }
}

}  // namespace

Config::Config(const ParamRegistry& registry) : m_registry(registry) {}

void Config::apply_defaults() {
    for (const auto& d : m_registry.all()) {
        if (d.default_value) {
            std::string src = "default";
            if (!d.default_source.empty()) src += " " + d.default_source;
            m_values[d.key] = {*d.default_value, src};
        }
    }
}

const ParamDecl& Config::decl_for(const std::string& key, const std::string& origin) const {
    if (const ParamDecl* d = m_registry.find(key)) return *d;
    // Suggest the closest declared key and list the keys allowed under the deepest known prefix.
    std::string best;
    std::size_t best_dist = 1000;
    for (const auto& d : m_registry.all()) {
        std::size_t dist = edit_distance(key, d.key);
        if (dist < best_dist) best_dist = dist, best = d.key;
    }
    std::string prefix = key;
    std::vector<std::string> siblings;
    while (!prefix.empty()) {
        auto dot = prefix.rfind('.');
        prefix = dot == std::string::npos ? "" : prefix.substr(0, dot);
        siblings = m_registry.keys_under(prefix.empty() ? "" : prefix + ".");
        if (!siblings.empty()) break;
    }
    std::string msg = fmt::format("{}: unknown key '{}'", origin, key);
    if (best_dist <= 3) msg += fmt::format(" (did you mean '{}'?)", best);
    if (prefix.empty()) {
        // Not under any known section: name the top-level sections.
        std::vector<std::string> tops;
        for (const auto& d : m_registry.all()) {
            const std::string top = d.key.substr(0, d.key.find('.'));
            if (std::find(tops.begin(), tops.end(), top) == tops.end()) tops.push_back(top);
        }
        msg += "; allowed at the top level: " + join(tops) + " (and base, description in files)";
    } else if (siblings.size() <= 24) {
        msg += "; allowed: " + join(siblings);
    } else {
        msg += "; `trnsim describe CHIP` lists every key";
    }
    throw UserError(msg);
}

void Config::validate(const ParamDecl& d, const std::string& text, const std::string& origin) const {
    auto fail = [&](const std::string& why) {
        throw UserError(fmt::format("{}: {} = '{}': {}; allowed: {}", origin, d.key, text, why, allowed_text(d)));
    };
    switch (d.type) {
        case ParamType::integer: {
            std::int64_t v = 0;
            if (!parse_int(text, v)) fail("not an integer");
            if (static_cast<double>(v) < d.min || static_cast<double>(v) > d.max) fail("out of range");
            return;
        }
        case ParamType::real: {
            double v = 0;
            if (!parse_real(text, v)) fail("not a number");
            if (v < d.min || v > d.max) fail("out of range");
            return;
        }
        case ParamType::boolean:
            if (text != "true" && text != "false") fail("not a bool");
            return;
        case ParamType::text:
            if (text.empty()) fail("empty");
            return;
        case ParamType::choice:
            if (std::find(d.choices.begin(), d.choices.end(), text) == d.choices.end()) fail("not a known value");
            return;
        case ParamType::frequency:
        case ParamType::bandwidth:
        case ParamType::bytes:
        case ParamType::duration:
        case ParamType::energy:
        case ParamType::power: {
            double v = 0;
            try {
                v = base_value(d, text);
            } catch (const UnitError& e) {
                // The unit error already lists the units; add only the range.
                const std::string range = unit_range_text(d);
                throw UserError(fmt::format("{}: {} = '{}': {}{}", origin, d.key, text, e.what(),
                                            range.empty() ? "" : "; allowed values" + range));
            }
            if (v < d.min || v > d.max) fail("out of range");
            const bool zero_allowed = d.type == ParamType::duration || d.type == ParamType::bytes ||
                                      d.type == ParamType::energy || d.type == ParamType::power;
            if (v <= 0 && !zero_allowed) fail("must be positive");
            return;
        }
    }
}

void Config::set(const std::string& key, const std::string& text, const std::string& source) {
    const ParamDecl& d = decl_for(key, source);
    validate(d, text, source);
    m_values[key] = {text, source};
}

namespace {

void check_unique_keys(const YAML::Node& node, const std::string& prefix, const std::string& origin) {
    if (node.IsMap()) {
        std::set<std::string> seen;
        for (const auto& kv : node) {
            const std::string k = kv.first.Scalar();
            const std::string path = prefix.empty() ? k : prefix + "." + k;
            if (!seen.insert(k).second)
                throw UserError(fmt::format("{}: {}: given twice; allowed: each key once", origin, path));
            check_unique_keys(kv.second, path, origin);
        }
    } else if (node.IsSequence()) {
        for (std::size_t i = 0; i < node.size(); ++i)
            check_unique_keys(node[i], fmt::format("{}[{}]", prefix, i), origin);
    }
}

}  // namespace

std::string read_yaml_file(const std::string& path, const std::string& what) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        throw UserError(fmt::format("cannot read {} '{}': a directory; allowed: a YAML file", what, path));
    std::ifstream in(path);
    if (!in) throw UserError(fmt::format("cannot read {} '{}'", what, path));
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

YAML::Node parse_yaml(const std::string& text, const std::string& origin) {
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        throw UserError(fmt::format("{}: YAML syntax error at line {}, column {}: {}", origin, e.mark.line + 1,
                                    e.mark.column + 1, e.msg));
    }
    check_unique_keys(root, "", origin);
    return root;
}

namespace {

void flatten(const YAML::Node& node, const std::string& prefix, const std::string& origin,
             std::vector<std::pair<std::string, std::pair<std::string, std::string>>>& out) {
    if (node.IsScalar()) {
        out.push_back({prefix, {node.Scalar(), ""}});
        return;
    }
    if (node.IsMap()) {
        // A leaf with provenance: {value: 2.4GHz, source: "[NKI-ARCH2]"}.
        if (node["value"] && !prefix.empty()) {
            for (const auto& kv : node) {
                const auto k = kv.first.Scalar();
                if (k != "value" && k != "source") {
                    throw UserError(
                        fmt::format("{}: {}.{}: a value entry allows only 'value' and 'source'", origin, prefix, k));
                }
            }
            if (!node["value"].IsScalar())
                throw UserError(fmt::format("{}: {}: 'value' must be a scalar", origin, prefix));
            std::string source = node["source"] ? node["source"].as<std::string>() : "";
            out.push_back({prefix, {node["value"].Scalar(), source}});
            return;
        }
        for (const auto& kv : node) {
            const std::string k = kv.first.as<std::string>();
            flatten(kv.second, prefix.empty() ? k : prefix + "." + k, origin, out);
        }
        return;
    }
    if (node.IsNull()) throw UserError(fmt::format("{}: {}: missing value", origin, prefix));
    throw UserError(fmt::format("{}: {}: expected a value or a mapping, found a list", origin, prefix));
}

}  // namespace

void Config::apply_yaml_text(const std::string& yaml_text, const std::string& origin) {
    const YAML::Node root = parse_yaml(yaml_text, origin);
    if (root.IsNull()) return;
    if (!root.IsMap()) throw UserError(origin + ": expected a mapping of keys at the top level");
    std::vector<std::pair<std::string, std::pair<std::string, std::string>>> leaves;
    for (const auto& kv : root) {
        const std::string k = kv.first.as<std::string>();
        if (k == "base" || k == "description") continue;
        flatten(kv.second, k, origin, leaves);
    }
    for (const auto& [key, vs] : leaves) {
        std::string source = origin;
        if (!vs.second.empty()) source += " " + vs.second;
        set(key, vs.first, source);
    }
}

void Config::apply_yaml_file(const std::string& path) {
    const std::string text = read_yaml_file(path, "config file");
    const YAML::Node root = parse_yaml(text, path);
    if (root.IsMap() && root["base"]) {
        throw UserError(
            fmt::format("{}: base: an overlay (--config) lies on the preset or file it is given with; "
                        "allowed: base in a --cluster or --chip file",
                        path));
    }
    apply_yaml_text(text, path);
}

void Config::apply_override(const std::string& assignment) {
    auto eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0) {
        throw UserError(
            fmt::format("--set '{}': expected dotted.key=value, e.g. chip.core.tensor_engine.rows=256", assignment));
    }
    set(assignment.substr(0, eq), assignment.substr(eq + 1), "--set");
}

void Config::check_complete(const std::string& context) const {
    for (const auto& d : m_registry.all()) {
        if (!m_values.count(d.key)) {
            throw UserError(fmt::format("{}missing required key '{}' ({}): {}; give it in the preset, a file or --set",
                                        context.empty() ? "" : context + ": ", d.key, d.doc, allowed_text(d)));
        }
    }
}

bool Config::has(const std::string& key) const {
    return m_values.count(key) != 0;
}

const ConfigValue& Config::raw(const std::string& key) const {
    auto it = m_values.find(key);
    if (it == m_values.end()) throw UserError(fmt::format("missing required key '{}'", key));
    return it->second;
}

std::int64_t Config::get_int(const std::string& key) const {
    std::int64_t v = 0;
    parse_int(raw(key).text, v);
    return v;
}
double Config::get_real(const std::string& key) const {
    double v = 0;
    parse_real(raw(key).text, v);
    return v;
}
bool Config::get_bool(const std::string& key) const {
    return raw(key).text == "true";
}
std::string Config::get_text(const std::string& key) const {
    return raw(key).text;
}
Frequency Config::get_frequency(const std::string& key) const {
    return parse_frequency(raw(key).text);
}
Bandwidth Config::get_bandwidth(const std::string& key) const {
    return parse_bandwidth(raw(key).text);
}
Bytes Config::get_bytes(const std::string& key) const {
    return parse_bytes(raw(key).text);
}
Duration Config::get_duration(const std::string& key) const {
    return parse_duration(raw(key).text);
}
Energy Config::get_energy(const std::string& key) const {
    return parse_energy(raw(key).text);
}
Power Config::get_power(const std::string& key) const {
    return parse_power(raw(key).text);
}

const EmbeddedPreset* find_preset(const std::string& kind, const std::string& name) {
    const std::string full = kind + "/" + name;
    for (const auto& p : embedded_presets()) {
        if (full == p.name) return &p;
    }
    return nullptr;
}

std::vector<std::string> preset_names(const std::string& kind) {
    std::vector<std::string> out;
    const std::string prefix = kind + "/";
    for (const auto& p : embedded_presets()) {
        std::string n = p.name;
        if (n.compare(0, prefix.size(), prefix) == 0) out.push_back(n.substr(prefix.size()));
    }
    std::sort(out.begin(), out.end());
    return out;
}

namespace {

void apply_layer(Config& config, const std::string& kind, const std::string& name_or_path, int depth) {
    if (depth > 8) throw UserError("config 'base:' chain is deeper than 8 (a cycle?) at " + name_or_path);
    std::string text;
    std::string origin;
    if (const EmbeddedPreset* p = find_preset(kind, name_or_path)) {
        text = p->text;
        origin = "preset " + name_or_path;
    } else if (name_or_path.find('/') != std::string::npos || name_or_path.find(".yaml") != std::string::npos ||
               name_or_path.find(".yml") != std::string::npos) {
        text = read_yaml_file(name_or_path, kind == "models" ? "model file" : "config file");
        origin = name_or_path;
    } else {
        throw UserError(fmt::format("unknown {} preset '{}'; allowed: {} (or a path to a .yaml file)",
                                    kind == "chips"    ? "chip"
                                    : kind == "memory" ? "memory (HBM part)"
                                                       : kind,
                                    name_or_path, join(preset_names(kind))));
    }
    const YAML::Node root = parse_yaml(text, origin);
    if (root.IsMap() && root["base"]) apply_layer(config, kind, root["base"].as<std::string>(), depth + 1);
    config.apply_yaml_text(text, origin);
}

}  // namespace

void apply_preset_or_file(Config& config, const std::string& kind, const std::string& name_or_path) {
    apply_layer(config, kind, name_or_path, 0);
}

}  // namespace trnsim
