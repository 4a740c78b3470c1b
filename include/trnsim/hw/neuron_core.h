#pragma once
// One NeuronCore [NCv2][NCv3][NCv4][NKI-ARCH1..3]: Tensor, Vector, Scalar and GpSimd engines, each
// running its own in-order instruction stream on its own clock; SBUF and PSUM (capacity enforced when a
// program is loaded); the DMA engines with their queues; the semaphores that synchronise them; and a
// memory port (TLM initiator) towards the chip's memory.
//
// Lifecycle: construct from (name, spec) -> bind memory_port -> load(program) -> sc_start -> stats().
// Compute engines issue as soon as their semaphores allow and their port is free; they may run ahead of
// simulated time because semaphore counts only grow. DMA queues issue at simulated time, since they share
// the DMA engines and the memory.

#include <cstdint>
#include <memory>
#include <vector>

#include <systemc>

#include "trnsim/core/clock.h"
#include "trnsim/core/config.h"
#include "trnsim/hw/compute_engine.h"
#include "trnsim/hw/dma.h"
#include "trnsim/hw/functional.h"
#include "trnsim/hw/isa.h"
#include "trnsim/hw/semaphores.h"
#include "trnsim/hw/tensor_engine.h"

namespace trnsim::hw {

struct NeuronCoreSpec {
    TensorEngineSpec tensor;
    ComputeEngineSpec vector;
    ComputeEngineSpec scalar;
    ComputeEngineSpec gpsimd;
    DmaSpec dma;
    int sbuf_partitions = 128;
    Bytes sbuf_partition_size;
    int psum_banks = 8;
    Bytes psum_partition_size;

    Bytes psum_bank_size() const { return Bytes{psum_partition_size.count / static_cast<std::uint64_t>(psum_banks)}; }

    static void declare(ParamRegistry& registry);
    static NeuronCoreSpec from_config(const Config& config);
};

struct EngineStats {
    std::uint64_t instructions = 0;
    std::uint64_t busy_fs = 0;
    std::uint64_t first_start_fs = UINT64_MAX;
    std::uint64_t last_end_fs = 0;
    std::int64_t busy_cycles = 0;
};

struct CoreStats {
    EngineStats engines[k_compute_engines];
    std::int64_t tensor_first_cycle = -1;  // first tensor-engine instruction start
    std::int64_t tensor_last_cycle = 0;    // last PSUM write (exclusive)
    std::uint64_t end_fs = 0;              // last completion of anything
    std::uint64_t wakeups = 0;
    std::uint64_t sbuf_bytes = 0;  // statically allocated SBUF
    std::uint64_t psum_bytes = 0;
    std::uint64_t macs = 0;  // multiply-accumulates issued to the tensor engine
};

// One interval of the instruction timeline: an engine's issue-port busy period, or a DMA transfer from
// issue to completion (track = queue).
struct TraceRecord {
    bool dma = false;
    int track = 0;  // engine index (EngineKind) or DMA queue
    Op op = Op::tensor_copy;
    std::uint64_t start_fs = 0;
    std::uint64_t end_fs = 0;
};

class NeuronCore : public sc_core::sc_module {
public:
    NeuronCore(const sc_core::sc_module_name& name, const NeuronCoreSpec& spec);

    DmaSubsystem& dma() { return *m_dma; }
    // Checks the program against the core (capacity, tile limits) and prepares its threads. Call once,
    // before sc_start. `functional` (optional) receives the values.
    void load(const Program& program, FunctionalState* functional);

    const CoreStats& stats() const { return m_stats; }
    // After sc_start: throws std::logic_error naming the stuck streams if any instruction did not run
    // (a semaphore that never reached its value: a lowering bug).
    void check_finished() const;
    void enable_trace() { m_tracing = true; }
    const std::vector<TraceRecord>& trace() const { return m_trace; }
    const DmaStats& dma_stats() const { return m_dma->stats(); }
    const NeuronCoreSpec& spec() const { return m_spec; }

private:
    void compute_thread(EngineKind kind);
    void queue_thread(int queue);
    void wait_for(const std::vector<SemWait>& waits);
    void validate(const Program& program) const;
    MatmulShape shape_of(const Instruction& ins) const;

    NeuronCoreSpec m_spec;
    std::unique_ptr<SemaphoreBank> m_semaphores;
    std::unique_ptr<DmaSubsystem> m_dma;
    TensorEngine m_tensor;
    std::unique_ptr<ComputeEngine> m_compute[k_compute_engines];
    ClockDomain m_clocks[k_compute_engines];
    const Program* m_program = nullptr;
    FunctionalState* m_functional = nullptr;
    CoreStats m_stats;
    bool m_tracing = false;
    std::vector<TraceRecord> m_trace;
};

}  // namespace trnsim::hw
