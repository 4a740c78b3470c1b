#pragma once
// A packet switch (Trn3 NeuronSwitch levels, the inter-node EFA network), modelled as an output-queued
// crossbar: every port has an output Link with the port's bandwidth and the switch's traversal latency,
// which serializes the packets bound for that port and arbitrates round-robin between the flows that
// compete for it. The input side of a port is the attached chip's uplink (a Link owned by the topology,
// with the same port bandwidth), so a route through the switch is two hops: uplink, then output port.
// Abstracted away: the crossbar's internal speed-up (assumed sufficient, so only the ports contend),
// head-of-line blocking at inputs, finite buffers and credit flow control, adaptive routing.

#include <memory>
#include <string>
#include <vector>

#include <systemc>

#include "trnsim/hw/link.h"

namespace trnsim::hw {

struct SwitchSpec {
    int ports = 0;
    Bandwidth port_bandwidth;  // per port, per direction
    Duration latency;          // traversal: from a packet's head entering to leaving the output port,
                               // plus the output cable
};

class NetworkSwitch : public sc_core::sc_module {
public:
    NetworkSwitch(const sc_core::sc_module_name& name, const SwitchSpec& spec);

    // The output port towards port `i`'s attached endpoint: the next hop of a route through the switch.
    Link& output(int i) { return *m_outputs.at(static_cast<std::size_t>(i)); }
    const Link& output(int i) const { return *m_outputs.at(static_cast<std::size_t>(i)); }
    const SwitchSpec& spec() const { return m_spec; }

private:
    SwitchSpec m_spec;
    std::vector<std::unique_ptr<Link>> m_outputs;
};

}  // namespace trnsim::hw
