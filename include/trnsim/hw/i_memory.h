#pragma once
// Memory behind the DMA engines. A memory model is an sc_module with a TLM-2.0 target socket; DMA engines
// call b_transport with a generic payload (address, length, read/write; no data pointer: values move in
// the functional model) carrying a MemoryTiming extension:
// - b_transport returns when the memory has accepted the request; it may wait in simulated time while the
//   memory's queues are full (back-pressure). `accept_delay` (relative to the return) says when the
//   initiator may send its next request.
// - the memory calls `on_done(fs)` exactly once with the absolute time the last byte was delivered; it may
//   do so from inside b_transport (a model that knows the time at once) or later (a queued model), so the
//   latency of one request overlaps the next ones.
// Models are a family chosen by name (`chip.memory.model`): "ideal" here; "hbm" plugs in the same way.
// Collectives choose theirs with `cluster.memory_model` (docs/adr/0008).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <tlm_utils/simple_target_socket.h>
#include <systemc>
#include <tlm>

#include "trnsim/core/config.h"

namespace trnsim::hw {

struct MemoryTiming : tlm::tlm_extension<MemoryTiming> {
    sc_core::sc_time accept_delay;               // set by the memory, relative to b_transport's return
    std::uint64_t arrival_fs = 0;                // set by the memory: when the request entered its queues
    std::function<void(std::uint64_t)> on_done;  // set by the initiator: called with the completion time
    tlm::tlm_extension_base* clone() const override { return new MemoryTiming(*this); }
    void copy_from(const tlm::tlm_extension_base& other) override {
        const auto& o = static_cast<const MemoryTiming&>(other);
        accept_delay = o.accept_delay;
        arrival_fs = o.arrival_fs;
        on_done = o.on_done;
    }
};

// When an access that completes at once is done: its data delivered, and the target ready for the next
// request (absolute times, fs).
struct AccessTiming {
    std::uint64_t done_fs = 0;
    std::uint64_t accept_fs = 0;
};

// The direct path to a target that completes every access within b_transport (the memories and the
// on-chip fabric that collectives use, docs/adr/0008): the same access as b_transport with a zero delay,
// without the generic payload, the extension's callback and the sc_time conversions on the way. Like
// TLM's direct memory interface it bypasses the transport, not the model: the target's state and counters
// change exactly as through b_transport. The cluster hands it to an initiator next to binding the socket,
// when the target offers one (docs/hw/interconnect.md, section 4a).
class ITimedAccess {
public:
    virtual ~ITimedAccess() = default;
    // An access of `bytes` requested at `request_fs` (the current time).
    virtual AccessTiming timed_access(bool write, std::uint64_t bytes, std::uint64_t request_fs) = 0;
};

// b_transport of a target that offers the direct path: the access at the current time plus `delay`, its
// completion reported through MemoryTiming when the payload carries it.
void transport_timed(ITimedAccess& target, tlm::tlm_generic_payload& trans, sc_core::sc_time& delay);

struct MemoryStats {
    std::uint64_t read_bytes = 0;
    std::uint64_t write_bytes = 0;
    std::uint64_t requests = 0;
    std::uint64_t busy_fs = 0;
    // How far the chip's kernels fell behind for the memory time the collectives' requests took from them
    // (a memory shared with the kernels, set_kernel_load).
    std::uint64_t kernel_lag_fs = 0;
    MemoryStats& operator+=(const MemoryStats& d) {
        read_bytes += d.read_bytes;
        write_bytes += d.write_bytes;
        requests += d.requests;
        busy_fs += d.busy_fs;
        kernel_lag_fs += d.kernel_lag_fs;
        return *this;
    }
};

class IMemory : public sc_core::sc_module {
public:
    tlm_utils::simple_target_socket<IMemory> socket;

    explicit IMemory(const sc_core::sc_module_name& name) : sc_core::sc_module(name), socket("socket") {
        socket.register_b_transport(this, &IMemory::b_transport);
    }
    virtual void b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) = 0;
    virtual const MemoryStats& stats() const = 0;
    // Peak bandwidth this model can deliver to its initiators, bytes per second.
    virtual double peak_bytes_per_s() const = 0;
    // Called once after the simulation: bring internal state (and time-integrated statistics such as
    // background energy) up to `end_fs`, the end of the initiator's work (at most the current time).
    virtual void finish(std::uint64_t end_fs) {}
    // Model-specific results (energy, row-buffer hit rate, ...) by name, for reports.
    virtual std::map<std::string, double> summary() const { return {}; }
    // Nothing in flight and nothing queued at `now_fs` (the collective memo replays a busy period only over
    // idle memories, docs/adr/0006). A model that cannot tell says no.
    virtual bool idle(std::uint64_t now_fs) const { return false; }
    // The direct path (ITimedAccess) when the model offers one, else null.
    virtual ITimedAccess* direct_access() { return nullptr; }
    // The share of the memory's time the chip's running kernels take (0..1; CollectiveEngine::set_kernel_load).
    // A model of the chip's memory that the collectives share with the kernels serves their requests in the
    // time the kernels leave (hbm_tl_memory.h); a model of the memory out of the way ignores it.
    virtual void set_kernel_load(double load) {}
    // Adds the counters of a replayed busy period. Models that support replay override it.
    virtual void add_stats(const MemoryStats& d) {
        throw std::logic_error("memory model '" + std::string(name()) + "': counters cannot be replayed");
    }
};

// How many NeuronCores share the chip's memory: a per-core model gets 1/cores of the chip's resources.
struct MemoryContext {
    int cores_sharing = 1;
    bool whole_chip = false;  // model the whole chip's memory (trnsim mem) instead of one core's share
};

using MemoryFactory =
    std::function<std::unique_ptr<IMemory>(const sc_core::sc_module_name&, const Config&, const MemoryContext&)>;

void register_memory_model(const std::string& name, MemoryFactory factory);
std::unique_ptr<IMemory> make_memory(const std::string& name, const sc_core::sc_module_name& module_name,
                                     const Config& config, const MemoryContext& context);
std::vector<std::string> memory_model_names();

}  // namespace trnsim::hw
