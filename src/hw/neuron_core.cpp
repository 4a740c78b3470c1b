#include "trnsim/hw/neuron_core.h"

#include <algorithm>

#include <fmt/format.h>

#include "trnsim/core/error.h"

namespace trnsim::hw {

void NeuronCoreSpec::declare(ParamRegistry& r) {
    TensorEngineSpec::declare(r);
    ComputeEngineSpec::declare(r, EngineKind::vector);
    ComputeEngineSpec::declare(r, EngineKind::scalar);
    ComputeEngineSpec::declare(r, EngineKind::gpsimd);
    DmaSpec::declare(r);
    r.declare({"chip.core.sbuf.partitions", ParamType::integer, "SBUF partitions", "128", "[NKI-ARCH1]", {}, 1, 4096});
    r.declare(
        {"chip.core.sbuf.partition_size", ParamType::bytes, "SBUF bytes per partition", std::nullopt, "", {}, 1, 1e12});
    r.declare({"chip.core.psum.banks",
               ParamType::integer,
               "PSUM banks (concurrent accumulation groups)",
               "8",
               "[NKI-ARCH1]",
               {},
               1,
               1024});
    r.declare({"chip.core.psum.partition_size",
               ParamType::bytes,
               "PSUM bytes per partition",
               "16KiB",
               "[NKI-ARCH1]",
               {},
               1,
               1e12});
}

NeuronCoreSpec NeuronCoreSpec::from_config(const Config& c) {
    NeuronCoreSpec s;
    s.tensor = TensorEngineSpec::from_config(c);
    s.vector = ComputeEngineSpec::from_config(c, EngineKind::vector);
    s.scalar = ComputeEngineSpec::from_config(c, EngineKind::scalar);
    s.gpsimd = ComputeEngineSpec::from_config(c, EngineKind::gpsimd);
    s.dma = DmaSpec::from_config(c);
    s.sbuf_partitions = static_cast<int>(c.get_int("chip.core.sbuf.partitions"));
    s.sbuf_partition_size = c.get_bytes("chip.core.sbuf.partition_size");
    s.psum_banks = static_cast<int>(c.get_int("chip.core.psum.banks"));
    s.psum_partition_size = c.get_bytes("chip.core.psum.partition_size");
    // The array reads one SBUF partition per PE row and writes one PSUM partition per PE column.
    if (s.tensor.rows > s.sbuf_partitions || s.tensor.cols > s.sbuf_partitions) {
        throw UserError(
            fmt::format("chip.core.tensor_engine.rows x cols = {} x {} exceeds chip.core.sbuf.partitions = {}: "
                        "the array reads one SBUF partition per PE row and writes one PSUM partition per PE "
                        "column; allowed: rows and cols <= partitions (raise chip.core.sbuf.partitions too)",
                        s.tensor.rows, s.tensor.cols, s.sbuf_partitions));
    }
    return s;
}

NeuronCore::NeuronCore(const sc_core::sc_module_name& name, const NeuronCoreSpec& spec)
    : sc_core::sc_module(name),
      m_spec(spec),
      m_semaphores(std::make_unique<SemaphoreBank>("semaphores")),
      m_dma(std::make_unique<DmaSubsystem>("dma", spec.dma, spec.sbuf_partitions)),
      m_tensor(spec.tensor) {
    const ComputeEngineSpec* specs[] = {nullptr, &spec.vector, &spec.scalar, &spec.gpsimd};
    m_clocks[0] = ClockDomain(spec.tensor.clock.hz);
    for (int e = 1; e < k_compute_engines; ++e) {
        m_compute[e] = std::make_unique<ComputeEngine>(*specs[e]);
        m_clocks[e] = ClockDomain(specs[e]->clock.hz);
    }
}

void NeuronCore::validate(const Program& p) const {
    std::uint64_t sbuf = 0;
    int psum_buffers = 0;
    const std::uint64_t bank = m_spec.psum_bank_size().count;
    for (const auto& b : p.buffers) {
        if (b.partitions() > m_spec.sbuf_partitions) {
            throw std::logic_error(fmt::format("buffer {} spans {} partitions", b.name, b.partitions()));
        }
        if (b.space == MemSpace::sbuf) {
            sbuf += b.bytes_per_partition();
        } else {
            ++psum_buffers;
            if (b.bytes_per_partition() > bank) {
                throw UserError(
                    fmt::format("PSUM buffer {} needs {} B per partition, a bank holds {} B "
                                "(chip.core.psum.partition_size / banks)",
                                b.name, b.bytes_per_partition(), bank));
            }
        }
    }
    if (sbuf > m_spec.sbuf_partition_size.count) {
        throw UserError(fmt::format("the program needs {} per SBUF partition, chip.core.sbuf.partition_size is {}",
                                    to_string(Bytes{sbuf}), to_string(m_spec.sbuf_partition_size)));
    }
    if (psum_buffers > m_spec.psum_banks) {
        throw UserError(fmt::format("the program needs {} PSUM banks, chip.core.psum.banks is {}", psum_buffers,
                                    m_spec.psum_banks));
    }
    if (static_cast<int>(p.dma_queues.size()) > m_spec.dma.queues) {
        throw UserError(fmt::format("the program uses {} DMA queues, chip.core.dma.queues is {}", p.dma_queues.size(),
                                    m_spec.dma.queues));
    }
    for (const auto& ins : p.stream(EngineKind::tensor)) {
        const MatmulShape s = shape_of(ins);
        const int k_used = (s.k + s.pack - 1) / s.pack;
        const bool os = ins.op == Op::matmul_os;
        if ((!os && k_used > m_spec.tensor.rows) || s.c > m_spec.tensor.cols || (os && s.r > m_spec.tensor.rows) ||
            (ins.op == Op::multiply_moving && s.n > m_spec.tensor.moving_max)) {
            throw std::logic_error(fmt::format("tensor-engine tile {}x{}x{} exceeds the array", s.k, s.c, s.n));
        }
    }
}

MatmulShape NeuronCore::shape_of(const Instruction& ins) const {
    const auto& buf = m_program->buffers.at(static_cast<std::size_t>(ins.src0.buffer));
    MatmulShape s;
    s.k = ins.src0.rows;
    s.pack = buf.pack;
    s.rate = m_tensor.rate_for(buf.dtype == DType::fp32);
    switch (ins.op) {
        case Op::load_stationary: s.c = ins.src0.cols; break;
        case Op::multiply_moving: s.n = ins.src0.cols; break;
        case Op::matmul_os:
            s.r = ins.src0.cols;
            s.c = ins.src1.cols;
            break;
        default: throw std::logic_error(std::string("not a tensor-engine op: ") + op_name(ins.op));
    }
    return s;
}

void NeuronCore::load(const Program& program, FunctionalState* functional) {
    m_program = &program;
    m_functional = functional;
    validate(program);
    for (const auto& b : program.buffers) {
        const std::uint64_t bytes = b.bytes_per_partition() * static_cast<std::uint64_t>(b.partitions());
        (b.space == MemSpace::sbuf ? m_stats.sbuf_bytes : m_stats.psum_bytes) += bytes;
    }
    m_semaphores->resize(static_cast<std::size_t>(program.semaphores));
    for (int e = 0; e < k_compute_engines; ++e) {
        if (program.engines[e].empty()) continue;
        const auto kind = static_cast<EngineKind>(e);
        sc_core::sc_spawn([this, kind] { compute_thread(kind); }, sc_core::sc_gen_unique_name(engine_name(kind)));
    }
    for (int q = 0; q < static_cast<int>(program.dma_queues.size()); ++q) {
        sc_core::sc_spawn([this, q] { queue_thread(q); }, sc_core::sc_gen_unique_name("dma_queue"));
    }
}

void NeuronCore::wait_for(const std::vector<SemWait>& waits) {
    for (const auto& w : waits) {
        while (m_semaphores->count(w.semaphore) < w.value) {
            sc_core::wait(m_semaphores->changed(w.semaphore));
            ++m_stats.wakeups;
        }
    }
}

void NeuronCore::compute_thread(EngineKind kind) {
    const int e = static_cast<int>(kind);
    const ClockDomain& clock = m_clocks[e];
    EngineStats& st = m_stats.engines[e];
    std::int64_t busy_until = 0;
    for (const auto& ins : m_program->engines[e]) {
        wait_for(ins.waits);
        const std::int64_t earliest = clock.cycle_at_or_after(sc_core::sc_time_stamp().value());
        EngineTiming t;
        if (kind == EngineKind::tensor) {
            const MatmulShape s = shape_of(ins);
            if (ins.op == Op::load_stationary) {
                t = m_tensor.load_stationary(s, earliest);
            } else if (ins.op == Op::multiply_moving) {
                t = m_tensor.multiply_moving(s, earliest, ins.dst.buffer);
                m_stats.macs += static_cast<std::uint64_t>(s.k) * static_cast<std::uint64_t>(ins.dst.rows) *
                                static_cast<std::uint64_t>(s.n);
            } else {
                t = m_tensor.matmul_os(s, earliest, ins.dst.buffer);
                m_stats.macs += static_cast<std::uint64_t>(s.k) * static_cast<std::uint64_t>(s.r * s.c);
            }
            if (m_stats.tensor_first_cycle < 0) m_stats.tensor_first_cycle = t.start;
            if (ins.op != Op::load_stationary) m_stats.tensor_last_cycle = std::max(m_stats.tensor_last_cycle, t.end);
        } else {
            t = m_compute[e]->issue(*m_program, ins, earliest);
        }
        if (m_functional) m_functional->execute(ins);
        // Busy time is the union of issue-port intervals (a background weight load under a streaming
        // MultiplyMoving is not counted twice).
        const std::int64_t from = std::max(t.start, busy_until);
        const std::int64_t to = t.start + t.busy;
        if (to > from) {
            st.busy_cycles += to - from;
            st.busy_fs += clock.edge_fs(to) - clock.edge_fs(from);
            busy_until = to;
        }
        if (m_tracing) m_trace.push_back({false, e, ins.op, clock.edge_fs(t.start), clock.edge_fs(t.start + t.busy)});
        ++st.instructions;
        st.first_start_fs = std::min(st.first_start_fs, clock.edge_fs(t.start));
        const std::uint64_t end_fs = clock.edge_fs(t.end);
        st.last_end_fs = std::max(st.last_end_fs, end_fs);
        m_stats.end_fs = std::max(m_stats.end_fs, end_fs);
        for (auto s : ins.signals) m_semaphores->post(s, end_fs);
    }
}

void NeuronCore::check_finished() const {
    std::string stuck;
    for (int e = 0; e < k_compute_engines; ++e) {
        const auto want = m_program->engines[e].size();
        if (m_stats.engines[e].instructions != want) {
            stuck += fmt::format(" {} engine ran {} of {};", engine_name(static_cast<EngineKind>(e)),
                                 m_stats.engines[e].instructions, want);
        }
    }
    std::uint64_t transfers = 0;
    for (const auto& q : m_program->dma_queues) transfers += q.size();
    if (m_dma->stats().completed != transfers) {
        stuck += fmt::format(" DMA completed {} of {} transfers;", m_dma->stats().completed, transfers);
    }
    if (!stuck.empty()) throw std::logic_error("simulation ended with instructions not run (deadlock):" + stuck);
}

void NeuronCore::queue_thread(int queue) {
    for (const auto& ins : m_program->dma_queues[static_cast<std::size_t>(queue)]) {
        wait_for(ins.waits);
        const auto& t = m_program->dram.at(static_cast<std::size_t>(ins.dram.tensor));
        const TileRef& tile = ins.op == Op::dma_load ? ins.dst : ins.src0;
        const auto& buf = m_program->buffers.at(static_cast<std::size_t>(tile.buffer));
        const std::size_t es = dtype_bytes(t.dtype);
        DmaTransfer x;
        x.queue = queue;
        x.write = ins.op == Op::dma_store;
        x.address = t.address + static_cast<std::uint64_t>(ins.dram.row0 * t.cols + ins.dram.col0) * es;
        x.partitions = (tile.rows + buf.pack - 1) / buf.pack;
        x.bytes_per_partition =
            static_cast<std::uint64_t>(std::min(buf.pack, tile.rows)) * static_cast<std::uint64_t>(tile.cols) * es;
        const bool full_rows = ins.dram.col0 == 0 && ins.dram.cols == t.cols;
        x.chunks_per_partition = full_rows ? 1 : std::min(buf.pack, tile.rows);
        if (ins.dram.rows == 1 && tile.rows > 1) x.broadcast_bytes = static_cast<std::uint64_t>(tile.cols) * es;
        if (m_functional) m_functional->execute(ins);
        const std::vector<std::int32_t>* signals = &ins.signals;
        const std::uint64_t issued_fs = sc_core::sc_time_stamp().value();
        const Op op = ins.op;
        m_dma->submit(x, [this, signals, issued_fs, op, queue](std::uint64_t done_fs) {
            if (m_tracing) m_trace.push_back({true, queue, op, issued_fs, done_fs});
            m_stats.end_fs = std::max(m_stats.end_fs, done_fs);
            for (auto s : *signals) m_semaphores->post(s, done_fs);
        });
    }
}

}  // namespace trnsim::hw
