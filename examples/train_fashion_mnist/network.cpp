#include "network.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <utility>

#include "curvkit/gemm.hpp"

namespace fmnist {
namespace {

using curvkit::MatrixBatch;
using curvkit::Op;
using ops::Activation;

void check(const curvkit::Status& st, const std::string& what) {
  if (!st.ok()) throw std::runtime_error(what + ": " + st.to_string());
}

[[noreturn]] void bad_spec(const std::string& model, std::size_t l, const std::string& what) {
  throw std::invalid_argument("model " + model + ", layer " + std::to_string(l) + ": " + what);
}

template <class T>
BackendArray<T> allocate(const Context& ctx, index_t count, const char* what) {
  BackendArray<T> a(ctx, std::size_t(count));
  check(a.status(), std::string("allocating ") + what);
  return a;
}

template <class T>
BackendArray<T> upload(const Context& ctx, const std::vector<T>& host, const char* what) {
  BackendArray<T> a(ctx, host);
  check(a.status(), std::string("allocating ") + what);
  return a;
}

// A one-matrix view of a row-major rows x cols block with row pitch ld.
template <class T>
MatrixBatch<T> mat(T* p, index_t rows, index_t cols, index_t ld) {
  return curvkit::make_batch(p, 1, rows, cols, ld, rows * ld);
}
template <class T>
MatrixBatch<const T> cmat(const T* p, index_t rows, index_t cols, index_t ld) {
  return curvkit::make_batch(p, 1, rows, cols, ld, rows * ld);
}

template <class T>
void gemm(const Context& ctx, Op op_a, Op op_b, T alpha, MatrixBatch<const T> a,
          MatrixBatch<const T> b, MatrixBatch<T> c, const char* what) {
  check(curvkit::gemm<T>(ctx, op_a, op_b, alpha, a, b, T(0), c), what);
}

LayerSpec linear(index_t d_in, index_t d_out, Activation act) {
  LayerSpec s;
  s.d_in = d_in;
  s.d_out = d_out;
  s.act = act;
  return s;
}

LayerSpec conv(index_t size, index_t c_in, index_t c_out, index_t kernel, bool pool) {
  LayerSpec s;
  s.conv = true;
  s.height = s.width = size;
  s.c_in = c_in;
  s.d_out = c_out;
  s.kernel = kernel;
  s.pad = kernel / 2;  // "same" padding for odd kernels
  s.pool = pool;
  return s;
}

}  // namespace

ModelSpec mlp_spec() {
  ModelSpec m;
  m.name = "mlp";
  m.layers = {linear(784, 256, Activation::relu), linear(256, 128, Activation::relu),
              linear(128, 10, Activation::identity)};
  return m;
}

ModelSpec cnn_spec() {
  ModelSpec m;
  m.name = "cnn";
  m.layers = {conv(28, 1, 16, 5, true), conv(14, 16, 32, 5, true),
              linear(7 * 7 * 32, 128, Activation::relu), linear(128, 10, Activation::identity)};
  return m;
}

ModelSpec autoencoder_spec() {
  ModelSpec m;
  m.name = "autoencoder";
  const index_t sizes[] = {784, 1000, 500, 250, 30, 250, 500, 1000, 784};
  for (int l = 0; l < 8; ++l) {
    // The 30-unit code (layer 3) and the output logits are linear; the sigmoid of the output
    // is part of the loss.
    const Activation act = (l == 3 || l == 7) ? Activation::identity : Activation::relu;
    m.layers.push_back(linear(sizes[l], sizes[l + 1], act));
  }
  m.loss = LossKind::sigmoid_bce;
  m.default_batch = 1000;
  return m;
}

ModelSpec model_spec(const std::string& name) {
  if (name == "mlp") return mlp_spec();
  if (name == "cnn") return cnn_spec();
  if (name == "autoencoder") return autoencoder_spec();
  throw std::invalid_argument("unknown model '" + name + "' (mlp, cnn, autoencoder)");
}

// ---- data -----------------------------------------------------------------------------------

DeviceSplit::DeviceSplit(const Context& ctx, const Split& split)
    : count(split.images.count), features(split.images.rows * split.images.cols) {
  images = upload(ctx, split.images.pixels, "images");
  labels = upload(ctx, split.labels.labels, "labels");
  std::vector<std::int32_t> identity(static_cast<std::size_t>(count));
  std::iota(identity.begin(), identity.end(), 0);
  order = upload(ctx, identity, "sample order");
}

void DeviceSplit::shuffle(const Context& ctx, std::uint64_t seed, std::int64_t epoch) {
  std::vector<std::int32_t> perm(static_cast<std::size_t>(count));
  std::iota(perm.begin(), perm.end(), 0);
  // Fisher-Yates with our own index draw: std::shuffle's algorithm is implementation-defined,
  // this order is the same with every standard library.
  std::mt19937_64 rng(seed * 1000003u + std::uint64_t(epoch));
  for (std::size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[rng() % i]);
  check(curvkit::copy_to_backend(ctx, order.data(), perm.data(), perm.size() * sizeof(perm[0])),
        "copying the sample order");
}

// ---- network --------------------------------------------------------------------------------

template <class T>
Network<T>::Network(const Context& ctx, ModelSpec spec, index_t max_batch, std::uint64_t seed)
    : ctx_(ctx), spec_(std::move(spec)), max_batch_(max_batch), seed_(seed) {
  ops::check_backend(ctx_);
  if (max_batch_ <= 0) throw std::invalid_argument("the batch size must be positive");
  if (spec_.layers.empty()) throw std::invalid_argument("model " + spec_.name + " has no layers");

  // Shapes: each layer's input must be what the layer before it produces.
  index_t features = spec_.input_features;
  for (std::size_t l = 0; l < spec_.layers.size(); ++l) {
    Layer L;
    L.spec = spec_.layers[l];
    const LayerSpec& s = L.spec;
    index_t out = 0;
    if (s.conv) {
      const ops::ConvShape sh = L.shape(1);
      if (s.height * s.width * s.c_in != features)
        bad_spec(spec_.name, l,
                 "a " + std::to_string(s.height) + " x " + std::to_string(s.width) + " x " +
                     std::to_string(s.c_in) + " input, but " + std::to_string(features) +
                     " features arrive");
      if (sh.out_height() < 1 || sh.out_width() < 1)
        bad_spec(spec_.name, l, "the kernel is larger than the padded input");
      L.positions = sh.positions();
      L.d_in = sh.patch();
      L.in_features = features;
      out = s.pool ? (sh.out_height() / 2) * (sh.out_width() / 2) * s.d_out : L.positions * s.d_out;
      if (s.pool && (sh.out_height() < 2 || sh.out_width() < 2))
        bad_spec(spec_.name, l, "too small to pool");
    } else {
      if (s.d_in != features)
        bad_spec(spec_.name, l,
                 "d_in is " + std::to_string(s.d_in) + " but " + std::to_string(features) +
                     " features arrive");
      if (s.pool) bad_spec(spec_.name, l, "pooling follows convolutions only");
      L.d_in = s.d_in;
      L.in_features = s.d_in;
      out = s.d_out;
    }
    L.a_cols = L.d_in + (s.bias ? 1 : 0);
    features = out;
    layers_.push_back(std::move(L));
  }
  const LayerSpec& top = layers_.back().spec;
  if (top.conv || top.pool || top.act != Activation::identity)
    bad_spec(spec_.name, layers_.size() - 1,
             "the last layer must be linear with identity activation (the loss applies the "
             "softmax / sigmoid)");
  if (spec_.loss == LossKind::sigmoid_bce && top.d_out != spec_.input_features)
    bad_spec(spec_.name, layers_.size() - 1, "an autoencoder's output must match its input");

  // Buffers and weights.
  std::mt19937_64 rng(seed);
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    const LayerSpec& s = L.spec;
    const index_t rows = max_batch_ * L.positions;
    if (s.conv) L.x = allocate<T>(ctx_, max_batch_ * L.in_features, "x");
    {
      // The column of ones is written once; the layer before (or im2col) fills the rest.
      std::vector<T> a(std::size_t(rows * L.a_cols), T(0));
      if (s.bias)
        for (index_t r = 0; r < rows; ++r) a[std::size_t(r * L.a_cols + L.d_in)] = T(1);
      L.a = upload(ctx_, a, "a");
    }
    L.z = allocate<T>(ctx_, rows * s.d_out, "z");
    L.g = allocate<T>(ctx_, rows * s.d_out, "g");
    if (s.pool) {
      L.y = allocate<T>(ctx_, rows * s.d_out, "y");
      L.dy = allocate<T>(ctx_, rows * s.d_out, "dy");
      L.which = allocate<std::uint8_t>(ctx_, rows * s.d_out / 4, "pool arg-max");
    }
    if (l > 0) {
      L.d = allocate<T>(ctx_, rows * L.d_in, "d");
      if (s.conv) L.dx = allocate<T>(ctx_, max_batch_ * L.in_features, "dx");
    }

    // He normal before a ReLU (keeps the activations' scale through depth), Glorot uniform for
    // the linear code and output layers; zero biases.
    const index_t fan_in = L.d_in, fan_out = s.d_out * s.kernel * s.kernel;
    std::vector<T> w(std::size_t(s.d_out * L.d_in));
    if (s.act == Activation::relu) {
      std::normal_distribution<double> dist(0.0, std::sqrt(2.0 / double(fan_in)));
      for (auto& v : w) v = T(dist(rng));
    } else {
      const double r = std::sqrt(6.0 / double(fan_in + fan_out));
      std::uniform_real_distribution<double> dist(-r, r);
      for (auto& v : w) v = T(dist(rng));
    }
    L.w = upload(ctx_, w, "w");
    L.dw = allocate<T>(ctx_, s.d_out * L.d_in, "dw");
    if (s.bias) {
      L.b = upload(ctx_, std::vector<T>(std::size_t(s.d_out), T(0)), "b");
      L.db = allocate<T>(ctx_, s.d_out, "db");
    }
  }
  labels_ = upload(ctx_, std::vector<std::int32_t>(std::size_t(max_batch_), 0), "labels");
  sample_loss_ = allocate<T>(ctx_, max_batch_, "per-sample losses");
  sample_correct_ = allocate<T>(ctx_, max_batch_, "per-sample hits");
  stats_ = upload(ctx_, std::vector<double>(2, 0.0), "statistics");
}

template <class T>
std::size_t Network<T>::parameter_count() const {
  std::size_t n = 0;
  for (const Layer& L : layers_) n += L.w.size() + L.b.size();
  return n;
}

template <class T>
void Network<T>::load_batch(const DeviceSplit& data, index_t offset, index_t m) {
  if (m < 1 || m > max_batch_ || offset < 0 || offset + m > data.count)
    throw std::out_of_range("load_batch: samples [" + std::to_string(offset) + ", " +
                            std::to_string(offset + m) + ") of " + std::to_string(data.count) +
                            " with a batch of at most " + std::to_string(max_batch_));
  if (data.features != spec_.input_features)
    throw std::invalid_argument("load_batch: the data has " + std::to_string(data.features) +
                                " features per sample, the model takes " +
                                std::to_string(spec_.input_features));
  ops::gather_batch<T>(ctx_, data.images.data(), data.labels.data(), data.features,
                       data.order.data(), offset, m, input(0), input_ld(0), labels_.data());
}

template <class T>
void Network<T>::set_input(const std::vector<T>& x, const std::vector<std::int32_t>& labels,
                           index_t m) {
  const index_t f = spec_.input_features, ld = input_ld(0);
  if (m < 1 || m > max_batch_ || index_t(x.size()) != m * f)
    throw std::invalid_argument("set_input: x must hold m x input_features values");
  // Row by row into the input's layout (which may carry the column of ones).
  std::vector<T> host(std::size_t(m * ld), T(1));
  for (index_t r = 0; r < m; ++r)
    std::copy(x.begin() + r * f, x.begin() + (r + 1) * f, host.begin() + r * ld);
  check(curvkit::copy_to_backend(ctx_, input(0), host.data(), host.size() * sizeof(T)),
        "set_input");
  if (!labels.empty()) {
    if (index_t(labels.size()) != m) throw std::invalid_argument("set_input: m labels needed");
    check(curvkit::copy_to_backend(ctx_, labels_.data(), labels.data(), labels.size() * 4),
          "set_input labels");
  }
}

template <class T>
void Network<T>::forward(index_t m) {
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    const LayerSpec& s = L.spec;
    const index_t rows = m * L.positions;
    if (s.conv) ops::im2col<T>(ctx_, L.shape(m), L.x.data(), L.in_features, L.a.data(), L.a_cols);
    // z = a W^T over a's first d_in columns (the ones column belongs to the bias).
    gemm<T>(ctx_, Op::none, Op::trans, T(1), cmat<T>(L.a.data(), rows, L.d_in, L.a_cols),
            cmat<T>(L.w.data(), s.d_out, L.d_in, L.d_in), mat(L.z.data(), rows, s.d_out, s.d_out),
            "forward: z = a W^T");
    if (l + 1 == layers_.size()) {  // logits: the loss applies the output nonlinearity
      ops::bias_activate<T>(ctx_, rows, s.d_out, 1, L.z.data(), L.b.data(), Activation::identity,
                            nullptr, 0);
    } else if (s.pool) {
      const ops::ConvShape sh = L.shape(m);
      ops::bias_activate<T>(ctx_, rows, s.d_out, 1, L.z.data(), L.b.data(), s.act, L.y.data(),
                            s.d_out);
      ops::maxpool2<T>(ctx_, m, sh.out_height(), sh.out_width(), s.d_out, L.y.data(),
                       L.positions * s.d_out, input(l + 1), input_ld(l + 1), L.which.data());
    } else {
      ops::bias_activate<T>(ctx_, rows, s.d_out, L.positions, L.z.data(), L.b.data(), s.act,
                            input(l + 1), input_ld(l + 1));
    }
  }
}

template <class T>
void Network<T>::loss(index_t m, bool output_grad, bool accumulate) {
  Layer& top = layers_.back();
  T* grad = output_grad ? top.g.data() : nullptr;
  if (spec_.loss == LossKind::softmax_xent) {
    ops::softmax_xent<T>(ctx_, m, top.spec.d_out, top.z.data(), labels_.data(), grad,
                         sample_loss_.data(), sample_correct_.data());
    if (accumulate) ops::accumulate_sum<T>(ctx_, sample_correct_.data(), m, stats_.data() + 1);
  } else {
    // The autoencoder's targets are its inputs (the first m x 784 block of layer 0's input).
    ops::sigmoid_bce<T>(ctx_, m, top.spec.d_out, top.z.data(), input(0), input_ld(0), grad,
                        sample_loss_.data());
  }
  if (!accumulate) return;
  ops::accumulate_sum<T>(ctx_, sample_loss_.data(), m, stats_.data());
  stats_samples_ += m;
}

template <class T>
void Network<T>::allocate_sampled() {
  if (layers_.front().g_s.data() != nullptr) return;
  for (Layer& L : layers_) {
    L.g_s = allocate<T>(ctx_, max_batch_ * L.positions * L.spec.d_out, "g_sampled");
    L.dw_s = allocate<T>(ctx_, L.spec.d_out * L.d_in, "dw_sampled");
    if (L.spec.bias) L.db_s = allocate<T>(ctx_, L.spec.d_out, "db_sampled");
  }
}

template <class T>
void Network<T>::output_gradient_sampled(index_t m) {
  allocate_sampled();
  Layer& top = layers_.back();
  const std::uint64_t stream = sample_stream_++;
  if (spec_.loss == LossKind::softmax_xent)
    ops::softmax_sampled_grad<T>(ctx_, m, top.spec.d_out, top.z.data(), seed_, stream,
                                 top.g_s.data());
  else
    ops::sigmoid_bce_sampled_grad<T>(ctx_, m, top.spec.d_out, top.z.data(), seed_, stream,
                                     top.g_s.data());
}

template <class T>
void Network<T>::backward(index_t m) {
  backward_pass(m, false, true);
}

template <class T>
void Network<T>::backward_sampled(index_t m, bool weight_grads) {
  output_gradient_sampled(m);
  backward_pass(m, true, weight_grads);
}

template <class T>
void Network<T>::backward_pass(index_t m, bool sampled, bool weight_grads) {
  for (std::size_t l = layers_.size(); l-- > 0;) {
    Layer& L = layers_[l];
    const LayerSpec& s = L.spec;
    const index_t rows = m * L.positions;
    const T* g = sampled ? L.g_s.data() : L.g.data();
    if (weight_grads) {
      // dW = (1/m) g^T a, db = (1/m) column sums of g: the mean-loss gradients.
      gemm<T>(ctx_, Op::trans, Op::none, T(1) / T(m), cmat<T>(g, rows, s.d_out, s.d_out),
              cmat<T>(L.a.data(), rows, L.d_in, L.a_cols),
              mat((sampled ? L.dw_s : L.dw).data(), s.d_out, L.d_in, L.d_in),
              "backward: dW = g^T a / m");
      if (s.bias)
        ops::column_sums<T>(ctx_, rows, s.d_out, g, s.d_out, 1.0 / double(m),
                            (sampled ? L.db_s : L.db).data());
    }
    if (l == 0) break;  // nothing needs the gradient of the data
    Layer& P = layers_[l - 1];
    propagate(l, m, g, L.d.data(), L.dx.data(),
              {P.z.data(), P.which.data(), P.dy.data(), sampled ? P.g_s.data() : P.g.data()});
  }
}

template <class T>
void Network<T>::propagate(std::size_t l, index_t m, const T* g, T* d, T* dx,
                           const PrevBuffers& prev) {
  Layer& L = layers_[l];
  const LayerSpec& s = L.spec;
  const index_t rows = m * L.positions;
  // The gradient of this layer's input: g W, then back through im2col for a convolution.
  gemm<T>(ctx_, Op::none, Op::none, T(1), cmat<T>(g, rows, s.d_out, s.d_out),
          cmat<T>(L.w.data(), s.d_out, L.d_in, L.d_in), mat(d, rows, L.d_in, L.d_in),
          "backward: g W");
  const T* grad_in = d;
  if (s.conv) {
    ops::col2im<T>(ctx_, L.shape(m), d, L.d_in, dx, L.in_features);
    grad_in = dx;
  }
  // ... then through the previous layer's pooling and activation to its g.
  const Layer& P = layers_[l - 1];
  const index_t prev_rows = m * P.positions;
  if (P.spec.pool) {
    const ops::ConvShape sh = P.shape(m);
    ops::maxpool2_backward<T>(ctx_, m, sh.out_height(), sh.out_width(), P.spec.d_out, grad_in,
                              L.in_features, prev.which, prev.dy, P.positions * P.spec.d_out);
    ops::activation_backward<T>(ctx_, prev_rows, P.spec.d_out, 1, P.spec.act, prev.z, prev.dy,
                                P.spec.d_out, prev.g);
  } else {
    ops::activation_backward<T>(ctx_, prev_rows, P.spec.d_out, P.positions, P.spec.act, prev.z,
                                grad_in, L.in_features, prev.g);
  }
}

template <class T>
void Network<T>::allocate_cotangents(index_t pseudo_samples) {
  if (pseudo_samples <= cotangent_capacity_) return;
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    const index_t rows = pseudo_samples * L.positions, d_out = L.spec.d_out;
    L.q = allocate<T>(ctx_, rows * d_out, "cotangent q");
    if (l + 1 < layers_.size()) L.z_c = allocate<T>(ctx_, rows * d_out, "repeated z");
    if (L.spec.pool) {
      L.dy_c = allocate<T>(ctx_, rows * d_out, "cotangent dy");
      L.which_c = allocate<std::uint8_t>(ctx_, rows * d_out / 4, "repeated pool arg-max");
    }
    if (l > 0) {
      L.d_c = allocate<T>(ctx_, rows * L.d_in, "cotangent d");
      if (L.spec.conv) L.dx_c = allocate<T>(ctx_, pseudo_samples * L.in_features, "cotangent dx");
    }
  }
  cotangent_capacity_ = pseudo_samples;
}

template <class T>
void Network<T>::backward_cotangents(index_t m, index_t n2) {
  if (n2 < 1 || n2 > m)
    throw std::invalid_argument("backward_cotangents: n2 = " + std::to_string(n2) +
                                " must be in [1, m = " + std::to_string(m) + "]");
  Layer& top = layers_.back();
  const index_t outputs = top.spec.d_out, pseudo = n2 * outputs;
  allocate_cotangents(pseudo);
  cotangent_rows_ = pseudo;
  if (spec_.loss == LossKind::softmax_xent)
    ops::softmax_hessian_sqrt<T>(ctx_, n2, outputs, top.z.data(), top.q.data());
  else
    ops::sigmoid_hessian_sqrt<T>(ctx_, n2, outputs, top.z.data(), top.q.data());
  for (std::size_t l = layers_.size() - 1; l > 0; --l) {
    Layer& L = layers_[l];
    Layer& P = layers_[l - 1];
    // Pseudo-sample (i, r) sees sample i's pre-activations and pool choices.
    const index_t per_sample = P.positions * P.spec.d_out;
    ops::repeat_blocks<T>(ctx_, n2, outputs, per_sample, P.z.data(), P.z_c.data());
    if (P.spec.pool) {
      const ops::ConvShape sh = P.shape(1);
      const index_t pooled = (sh.out_height() / 2) * (sh.out_width() / 2) * P.spec.d_out;
      ops::repeat_blocks<std::uint8_t>(ctx_, n2, outputs, pooled, P.which.data(), P.which_c.data());
    }
    propagate(l, pseudo, L.q.data(), L.d_c.data(), L.dx_c.data(),
              {P.z_c.data(), P.which_c.data(), P.dy_c.data(), P.q.data()});
  }
}

template <class T>
std::vector<curvkit::optim::LayerView<T>> Network<T>::layer_views(
    index_t m, const curvkit::optim::Needs& needs) {
  if (needs.g_sampled || needs.grad_sampled) allocate_sampled();  // once (optimizer init)
  std::vector<curvkit::optim::LayerView<T>> views;
  views.reserve(layers_.size());
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    const LayerSpec& s = L.spec;
    const index_t rows = m * L.positions;
    curvkit::optim::LayerView<T> v;
    v.kind = s.conv ? curvkit::optim::LayerKind::conv2d : curvkit::optim::LayerKind::linear;
    v.w = curvkit::make_batch(L.w.data(), 1, s.d_out, L.d_in);
    v.dw = curvkit::make_batch<const T>(L.dw.data(), 1, s.d_out, L.d_in);
    if (s.bias) {
      v.b = curvkit::make_batch(L.b.data(), 1, 1, s.d_out);
      v.db = curvkit::make_batch<const T>(L.db.data(), 1, 1, s.d_out);
    }
    if (s.conv) {
      v.c_in = s.c_in;
      v.kh = v.kw = s.kernel;
    }
    v.output_layer = l + 1 == layers_.size();
    v.m = m;
    if (needs.a) v.a = curvkit::make_batch<const T>(L.a.data(), 1, rows, L.a_cols);
    if (needs.g) v.g = curvkit::make_batch<const T>(L.g.data(), 1, rows, s.d_out);
    if (needs.g_sampled) v.g_sampled = curvkit::make_batch<const T>(L.g_s.data(), 1, rows, s.d_out);
    if (needs.grad_sampled) {
      v.dw_sampled = curvkit::make_batch<const T>(L.dw_s.data(), 1, s.d_out, L.d_in);
      if (s.bias) v.db_sampled = curvkit::make_batch<const T>(L.db_s.data(), 1, 1, s.d_out);
    }
    if (needs.z) v.z = curvkit::make_batch<const T>(L.z.data(), 1, rows, s.d_out);
    if (needs.cotangents > 0) {
      if (cotangent_rows_ != needs.cotangents * layers_.back().spec.d_out)
        throw std::logic_error("layer_views: backward_cotangents(m, n2) did not run for n2 = " +
                               std::to_string(needs.cotangents));
      v.q = curvkit::make_batch<const T>(L.q.data(), 1, cotangent_rows_ * L.positions, s.d_out);
    }
    if (needs.losses && v.output_layer)
      v.losses = curvkit::make_batch<const T>(sample_loss_.data(), 1, 1, m);
    views.push_back(v);
  }
  return views;
}

template <class T>
Stats Network<T>::take_stats() {
  const std::vector<double> h = stats_.to_host();  // waits for the Context's work
  Stats s{h[0], h[1], stats_samples_};
  const double zeros[2] = {0.0, 0.0};
  check(curvkit::copy_to_backend(ctx_, stats_.data(), zeros, sizeof zeros), "resetting stats");
  stats_samples_ = 0;
  return s;
}

template <class T>
double Network<T>::last_mean_loss(index_t m) const {
  const std::vector<T> h = sample_loss_.to_host();
  double sum = 0;
  for (index_t i = 0; i < m; ++i) sum += double(h[std::size_t(i)]);
  return sum / double(m);
}

template <class T>
std::pair<double, double> train_step(const Context& ctx, Network<T>& net,
                                     curvkit::optim::Optimizer<T>& opt, const DeviceSplit& data,
                                     index_t offset, index_t m) {
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  // Synchronising around each region times the work, not just the launches.
  check(curvkit::synchronize(ctx), "synchronize");
  const auto t0 = Clock::now();
  const curvkit::optim::Needs needs = opt.needs();
  net.load_batch(data, offset, m);
  net.forward(m);
  net.loss(m, true);
  net.backward(m);
  if (needs.g_sampled || needs.grad_sampled) net.backward_sampled(m, needs.grad_sampled);
  if (needs.cotangents > 0) net.backward_cotangents(m, needs.cotangents);
  check(curvkit::synchronize(ctx), "synchronize");
  const auto t1 = Clock::now();
  check(opt.step(ctx, net.layer_views(m, needs)), "optimizer step");
  if (needs.second_pass != curvkit::optim::SecondPass::none) {
    // The same batch at the updated weights; its losses stay out of the epoch's statistics.
    const bool backward = needs.second_pass == curvkit::optim::SecondPass::forward_backward;
    net.forward(m);
    net.loss(m, backward, false);
    if (backward) net.backward(m);
    const curvkit::optim::Needs pass = curvkit::optim::Optimizer<T>::second_pass_needs(needs);
    check(opt.finish_step(ctx, net.layer_views(m, pass)), "optimizer finish_step");
  }
  check(curvkit::synchronize(ctx), "synchronize");
  return {seconds(t0, t1), seconds(t1, Clock::now())};
}

template class Network<float>;
template class Network<double>;
template std::pair<double, double> train_step<float>(const Context&, Network<float>&,
                                                     curvkit::optim::Optimizer<float>&,
                                                     const DeviceSplit&, index_t, index_t);
template std::pair<double, double> train_step<double>(const Context&, Network<double>&,
                                                      curvkit::optim::Optimizer<double>&,
                                                      const DeviceSplit&, index_t, index_t);

}  // namespace fmnist
