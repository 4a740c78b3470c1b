#include "trnsim/hw/i_memory.h"

#include <map>

#include "trnsim/core/error.h"

namespace trnsim::hw {

namespace {
std::map<std::string, MemoryFactory>& factories() {
    static std::map<std::string, MemoryFactory> f;
    return f;
}
}  // namespace

void register_memory_model(const std::string& name, MemoryFactory factory) {
    factories()[name] = std::move(factory);
}

std::vector<std::string> memory_model_names() {
    std::vector<std::string> out;
    for (const auto& kv : factories()) out.push_back(kv.first);
    return out;
}

std::unique_ptr<IMemory> make_memory(const std::string& name, const sc_core::sc_module_name& module_name,
                                     const Config& config, const MemoryContext& context) {
    auto it = factories().find(name);
    if (it == factories().end()) {
        std::string allowed;
        for (const auto& n : memory_model_names()) allowed += (allowed.empty() ? "" : ", ") + n;
        throw UserError("chip.memory.model = '" + name + "': unknown memory model; allowed: " + allowed);
    }
    return it->second(module_name, config, context);
}

}  // namespace trnsim::hw
