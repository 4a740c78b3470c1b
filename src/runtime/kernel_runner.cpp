#include "trnsim/runtime/kernel_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include <sys/resource.h>

#include <fmt/format.h>
#include <Eigen/Dense>

#include "trnsim/core/clock.h"
#include "trnsim/core/error.h"
#include "trnsim/core/sim_context.h"
#include "trnsim/hw/chip.h"
#include "trnsim/hw/functional.h"
#include "trnsim/hw/i_memory.h"
#include "trnsim/hw/neuron_core.h"

namespace trnsim::runtime {

namespace {

using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

Matrix as_matrix(const std::vector<float>& v, std::int64_t rows, std::int64_t cols) {
    Matrix m(rows, cols);
    for (std::int64_t i = 0; i < rows * cols; ++i) m.data()[i] = v[static_cast<std::size_t>(i)];
    return m;
}

// Fills the kernel's inputs with reproducible values, already in their dtype. GEMM operands in MX quad
// mode get OCP MXFP8 block scaling along K (32 values of one column).
void fill_inputs(const lowering::LoweredKernel& k, const hw::ChipSpec& chip, hw::FunctionalState& fs,
                 std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    std::uniform_real_distribution<float> scale(0.5f, 1.5f);
    const bool gemm = !k.shape.empty() && k.shape.front().first == "m";
    for (std::size_t i = 0; i < k.inputs.size(); ++i) {
        const int id = k.inputs[i];
        const auto& t = k.program.dram[static_cast<std::size_t>(id)];
        auto& data = fs.dram(id);
        const bool affine = t.name == "gamma" || t.name == "beta";
        for (auto& v : data) v = round_to(t.dtype, affine ? scale(rng) : value(rng));
        if (gemm && t.dtype == DType::fp8_e4m3 && chip.core.tensor.fp8_k_pack == 4) {
            std::vector<float> column(static_cast<std::size_t>(t.rows)), q(column.size());
            for (std::int64_t c = 0; c < t.cols; ++c) {
                for (std::int64_t r = 0; r < t.rows; ++r) column[r] = data[static_cast<std::size_t>(r * t.cols + c)];
                quantize_mxfp8_e4m3(column.data(), q.data(), static_cast<int>(t.rows));
                for (std::int64_t r = 0; r < t.rows; ++r) data[static_cast<std::size_t>(r * t.cols + c)] = q[r];
            }
        }
    }
}

int tensor_named(const lowering::LoweredKernel& k, const std::string& name) {
    for (std::size_t i = 0; i < k.program.dram.size(); ++i)
        if (k.program.dram[i].name == name) return static_cast<int>(i);
    throw std::logic_error("kernel has no DRAM tensor " + name);
}

Matrix dram_matrix(const lowering::LoweredKernel& k, hw::FunctionalState& fs, const std::string& name) {
    const int id = tensor_named(k, name);
    const auto& t = k.program.dram[static_cast<std::size_t>(id)];
    return as_matrix(fs.dram(id), t.rows, t.cols);
}

void set_dram(const lowering::LoweredKernel& k, hw::FunctionalState& fs, const std::string& name, const Matrix& m) {
    const int id = tensor_named(k, name);
    const DType dt = k.program.dram[static_cast<std::size_t>(id)].dtype;
    auto& data = fs.dram(id);
    for (Eigen::Index i = 0; i < m.size(); ++i) data[static_cast<std::size_t>(i)] = round_to(dt, float(m.data()[i]));
}

// Softmax attention of one head in FP64: the probabilities P (sq x sk) of scale Q K^T, the causal mask
// hiding key c from query r when c > q_offset + r, and the row log-sum-exp of the scaled scores.
struct Attention {
    Matrix p;
    Eigen::VectorXd lse;
};
Attention attention(const Matrix& q, const Matrix& k, const lowering::KernelRequest& r) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(r.k));
    Matrix s = scale * q * k.transpose();
    Attention a{Matrix(s.rows(), s.cols()), Eigen::VectorXd(s.rows())};
    for (Eigen::Index i = 0; i < s.rows(); ++i) {
        const Eigen::Index visible = r.causal ? std::min<Eigen::Index>(s.cols(), r.q_offset + i + 1) : s.cols();
        const double mx = s.row(i).head(visible).maxCoeff();
        double sum = 0;
        for (Eigen::Index c = 0; c < s.cols(); ++c) {
            a.p(i, c) = c < visible ? std::exp(s(i, c) - mx) : 0.0;
            sum += a.p(i, c);
        }
        a.p.row(i) /= sum;
        a.lse(i) = mx + std::log(sum);
    }
    return a;
}

// flash_bwd takes Q, K and dO in both layouts, and O and lse from the forward: the random fill is made
// consistent (one layout the transpose of the other; O and lse those of the forward).
void fill_flash_backward(const lowering::LoweredKernel& k, const lowering::KernelRequest& r, hw::FunctionalState& fs) {
    set_dram(k, fs, "q", dram_matrix(k, fs, "qT").transpose());
    set_dram(k, fs, "k", dram_matrix(k, fs, "kT").transpose());
    set_dram(k, fs, "do", dram_matrix(k, fs, "doT").transpose());
    const Attention a = attention(dram_matrix(k, fs, "q"), dram_matrix(k, fs, "k"), r);
    set_dram(k, fs, "o", a.p * dram_matrix(k, fs, "vT").transpose());
    set_dram(k, fs, "lse", a.lse);
}

// The FP64 results of a flash kernel, one per output in the kernel's order.
std::vector<Matrix> flash_reference(const lowering::LoweredKernel& k, const lowering::KernelRequest& r,
                                    hw::FunctionalState& fs) {
    if (r.op == "flash_fwd") {
        const Attention a = attention(dram_matrix(k, fs, "qT").transpose(), dram_matrix(k, fs, "kT").transpose(), r);
        return {a.p * dram_matrix(k, fs, "v"), Matrix(a.lse)};
    }
    const double scale = 1.0 / std::sqrt(static_cast<double>(r.k));
    const Matrix q = dram_matrix(k, fs, "q"), kk = dram_matrix(k, fs, "k"), v = dram_matrix(k, fs, "vT").transpose();
    const Matrix dout = dram_matrix(k, fs, "do");
    const Attention a = attention(q, kk, r);
    const Matrix dp = dout * v.transpose();
    const Eigen::VectorXd D = (dout.array() * (a.p * v).array()).rowwise().sum();
    const Matrix ds = a.p.array() * (dp.colwise() - D).array();
    return {scale * ds * kk, scale * ds.transpose() * q, a.p.transpose() * dout};
}

double gelu(double x) {
    return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

Matrix reference(const lowering::LoweredKernel& k, const std::string& op, hw::FunctionalState& fs) {
    auto input = [&](std::size_t i) {
        const auto& t = k.program.dram[static_cast<std::size_t>(k.inputs[i])];
        return as_matrix(fs.dram(k.inputs[i]), t.rows, t.cols);
    };
    if (op == "gemm") {
        const Matrix c = input(0).transpose() * input(1);  // lhsT^T @ rhs = A @ B
        return k.output_transposed ? Matrix(c.transpose()) : c;
    }
    const Matrix x = input(0);
    if (op == "transpose") return x.transpose();
    Matrix y(x.rows(), x.cols());
    const double eps = 1e-5;
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
        const auto row = x.row(r);
        if (op == "layernorm") {
            const double mean = row.mean();
            const double var = (row.array() - mean).square().mean();
            y.row(r) =
                ((row.array() - mean) / std::sqrt(var + eps)) * input(1).row(0).array() + input(2).row(0).array();
        } else if (op == "rmsnorm") {
            const double rms = std::sqrt(row.array().square().mean() + eps);
            y.row(r) = (row.array() / rms) * input(1).row(0).array();
        } else if (op == "softmax") {
            const Eigen::ArrayXd e = (row.array() - row.maxCoeff()).exp();
            y.row(r) = e / e.sum();
        } else if (op == "gelu") {
            y.row(r) = row.unaryExpr([](double v) { return gelu(v); });
        } else {
            y.row(r) = row.unaryExpr([](double v) { return v / (1.0 + std::exp(-v)); });
        }
    }
    return y;
}

}  // namespace

KernelResult run_kernel(const KernelOptions& options, const Config& config) {
    const hw::ChipSpec chip = hw::ChipSpec::from_config(config);
    // Values are computed element by element in the engines' order; bound the work so that a
    // --functional run stays within minutes.
    constexpr double k_functional_max_flops = 1e10;
    const lowering::LoweredKernel kernel = lowering::lower_kernel(options.request, chip);
    if (options.functional && kernel.flops > k_functional_max_flops) {
        throw UserError(
            fmt::format("--functional computes every value: allowed up to {:.0e} model FLOPs, this {} "
                        "has {:.3g}; use a smaller shape (timing alone has no such limit)",
                        k_functional_max_flops, options.request.op, kernel.flops));
    }

    init_systemc();
    const std::unique_ptr<hw::IMemory> memory_model =
        hw::make_memory(chip.memory_model, "memory", config, hw::MemoryContext{chip.cores});
    const auto core_model = std::make_unique<hw::NeuronCore>("core", chip.core);
    core_model->dma().memory_port.bind(memory_model->socket);
    std::unique_ptr<hw::FunctionalState> functional;
    if (options.functional) {
        functional = std::make_unique<hw::FunctionalState>(kernel.program);
        fill_inputs(kernel, chip, *functional, options.seed);
        if (options.request.op == "flash_bwd") fill_flash_backward(kernel, options.request, *functional);
    }
    core_model->load(kernel.program, functional.get());
    if (options.trace) core_model->enable_trace();

    const auto wall_start = std::chrono::steady_clock::now();
    run_simulation();
    core_model->check_finished();
    memory_model->finish(core_model->stats().end_fs);  // the memory's time-based energy ends with the kernel
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);

    const hw::Program& program = kernel.program;
    const hw::NeuronCore& core = *core_model;
    const hw::IMemory& memory = *memory_model;
    const auto& st = core.stats();
    const auto& dma = core.dma_stats();
    KernelResult r;
    r.op = options.request.op;
    r.shape = kernel.shape;
    r.plan = kernel.plan;
    r.dtype = dtype_name(options.request.dtype);
    r.chip = chip.name;
    const ClockDomain te_clock(chip.core.tensor.clock.hz);
    const std::uint64_t end_fs = std::max<std::uint64_t>(st.end_fs, 1);
    r.cycles = te_clock.cycle_at_or_after(end_fs);
    r.time_s = static_cast<double>(end_fs) * 1e-15;
    r.flops = kernel.flops;
    r.achieved_tflops = r.flops / r.time_s * 1e-12;
    r.peak_tflops = chip.core_peak_flops(options.request.dtype) * 1e-12;
    for (int e = 0; e < hw::k_compute_engines; ++e) {
        const std::string name = hw::engine_name(static_cast<hw::EngineKind>(e));
        r.utilization[name] = static_cast<double>(st.engines[e].busy_fs) / static_cast<double>(end_fs);
        r.instructions[name] = st.engines[e].instructions;
    }
    r.utilization["dma"] =
        static_cast<double>(dma.busy_fs) / (static_cast<double>(chip.core.dma.engines) * static_cast<double>(end_fs));
    r.instructions["dma"] = dma.transfers;
    r.tensor_engine_cycles = st.tensor_first_cycle < 0 ? 0 : st.tensor_last_cycle - st.tensor_first_cycle;
    r.tensor_macs = st.macs;
    r.hbm_read_bytes = memory.stats().read_bytes;
    r.hbm_write_bytes = memory.stats().write_bytes;
    r.dma_transfers = dma.transfers;
    r.sbuf_peak_bytes = st.sbuf_bytes;
    r.program_read_bytes = program.dma_read_bytes();
    r.program_write_bytes = program.dma_write_bytes();
    r.memory_bandwidth_gbps = static_cast<double>(r.hbm_read_bytes + r.hbm_write_bytes) / r.time_s * 1e-9;
    r.memory_model = chip.memory_model;
    r.memory_peak_gbps = memory.peak_bytes_per_s() * 1e-9;
    r.memory_summary = memory.summary();
    if (r.memory_summary.count("timing_violations") && r.memory_summary.at("timing_violations") > 0) {
        throw std::logic_error("HBM timing checker found violations (chip.memory.hbm.check_timing)");
    }
    r.wall_s = wall;
    r.peak_rss_bytes = static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
    r.events = st.wakeups + dma.wakeups;
    r.config = config.values();
    r.trace = core.trace();
    if (functional) {
        hw::FunctionalState& fs = *functional;
        r.functional = true;
        const std::vector<Matrix> refs = lowering::is_flash(options.request.op)
                                             ? flash_reference(kernel, options.request, fs)
                                             : std::vector<Matrix>{reference(kernel, options.request.op, fs)};
        // The largest error of any output, relative to that output's largest magnitude.
        r.max_rel_error = 0;
        for (std::size_t o = 0; o < refs.size(); ++o) {
            const int id = kernel.outputs[o];
            const auto& t = program.dram[static_cast<std::size_t>(id)];
            const Matrix y = as_matrix(fs.dram(id), t.rows, t.cols);
            const double scale = std::max(refs[o].cwiseAbs().maxCoeff(), 1e-30);
            r.max_rel_error = std::max(r.max_rel_error, (y - refs[o]).cwiseAbs().maxCoeff() / scale);
        }
    }
    return r;
}

}  // namespace trnsim::runtime
