#pragma once
// A FIFO in one power-of-two ring buffer that grows and never shrinks: the round-robin rotations of links and
// DMA rings, which push at the back and pop at the front millions of times with a handful of entries.
// std::deque did the same with a block map and a check for block ends on every push and pop (2% of a run).

#include <cstddef>
#include <vector>

namespace trnsim::hw {

template <class T>
class RingQueue {
public:
    bool empty() const { return m_size == 0; }
    std::size_t size() const { return m_size; }
    // The i-th entry from the front.
    T& operator[](std::size_t i) { return m_data[(m_head + i) & (m_data.size() - 1)]; }
    const T& operator[](std::size_t i) const { return m_data[(m_head + i) & (m_data.size() - 1)]; }
    T& front() { return (*this)[0]; }
    void push_back(const T& v) {
        if (m_size == m_data.size()) grow();
        (*this)[m_size] = v;
        ++m_size;
    }
    void pop_front() {
        m_head = (m_head + 1) & (m_data.size() - 1);
        --m_size;
    }
    // Removes the i-th entry; those behind it move up one place, keeping their order.
    void erase(std::size_t i) {
        for (; i + 1 < m_size; ++i) (*this)[i] = (*this)[i + 1];
        --m_size;
    }

private:
    void grow() {
        std::vector<T> data(m_data.empty() ? 8 : 2 * m_data.size());
        for (std::size_t i = 0; i < m_size; ++i) data[i] = (*this)[i];
        m_data.swap(data);
        m_head = 0;
    }

    std::vector<T> m_data;
    std::size_t m_head = 0;
    std::size_t m_size = 0;
};

}  // namespace trnsim::hw
