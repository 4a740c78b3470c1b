#include "trnsim/hw/network_switch.h"

#include <fmt/format.h>

namespace trnsim::hw {

NetworkSwitch::NetworkSwitch(const sc_core::sc_module_name& name, const SwitchSpec& spec)
    : sc_core::sc_module(name), m_spec(spec) {
    const LinkSpec port{spec.port_bandwidth, spec.latency};
    for (int i = 0; i < spec.ports; ++i) {
        m_outputs.push_back(std::make_unique<Link>(fmt::format("port{}", i).c_str(), port));
    }
}

}  // namespace trnsim::hw
