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

void transport_timed(ITimedAccess& target, tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) {
    const std::uint64_t now = sc_core::sc_time_stamp().value();
    const std::uint64_t request = now + delay.value();
    const AccessTiming t = target.timed_access(trans.is_write(), trans.get_data_length(), request);
    delay = sc_core::sc_time::from_value(t.done_fs - now);
    trans.set_response_status(tlm::TLM_OK_RESPONSE);
    if (auto* timing = trans.get_extension<MemoryTiming>()) {
        timing->accept_delay = sc_core::sc_time::from_value(t.accept_fs - now);
        timing->arrival_fs = request;
        if (timing->on_done) timing->on_done(t.done_fs);
    }
}

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
