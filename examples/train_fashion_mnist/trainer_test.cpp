// Tests of the Fashion-MNIST trainer:
//   Idx*       the real data set reads; missing, truncated, mislabelled and mis-sized copies
//              (written into FMNIST_SCRATCH_DIR) are rejected with the file's path in the error;
//   Gradient*  dW and db of tiny networks (linear, convolution with and without pooling, ReLU,
//              sigmoid, softmax cross-entropy and sigmoid BCE, a layer without bias) against
//              central finite differences of the mean loss, in double, on every backend;
//   Cotangent* SMW-GN's backprops of the loss Hessian's factor (C C^T = H; each layer's q against
//              finite differences of the logits), in double, on every backend;
//   Layout*    what the optimizer layer is handed: a with its column of ones and im2col columns
//              (c_in, ky, kx), g such that [dW | db] = (1/m) g^T a, and sampled-label gradients
//              that are those of labels drawn from the model's distribution.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "curvkit/core/context.hpp"
#include "curvkit/core/memory.hpp"
#include "curvkit/elementwise.hpp"
#include "idx.hpp"
#include "network.hpp"

namespace {

using curvkit::Context;
using curvkit::index_t;
using fmnist::IdxError;
using fmnist::LayerSpec;
using fmnist::ModelSpec;
using fmnist::ops::Activation;

// ---- data files -------------------------------------------------------------------------------

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = env_or("FMNIST_DATA_DIR", fmnist::kDefaultDataDir);
    scratch_ = env_or("FMNIST_SCRATCH_DIR",
                      (std::filesystem::temp_directory_path() / "fmnist_idx_test").string());
    std::filesystem::create_directories(scratch_);
    if (!std::filesystem::exists(data_ + "/t10k-labels-idx1-ubyte.gz"))
      GTEST_SKIP() << "no Fashion-MNIST in " << data_;
  }

  std::string scratch(const std::string& name) const { return scratch_ + "/" + name; }

  static std::vector<char> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
  }
  static void write_bytes(const std::string& path, const std::vector<char>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
  }
  // A raw IDX file: the header words (big-endian), then `data` bytes of value 7.
  static void write_idx(const std::string& path, std::vector<std::uint32_t> words,
                        std::size_t data) {
    std::vector<char> bytes;
    for (std::uint32_t w : words)
      for (int s = 24; s >= 0; s -= 8) bytes.push_back(char((w >> s) & 0xFF));
    bytes.insert(bytes.end(), data, char(7));
    write_bytes(path, bytes);
  }

  // Expects `f` to throw IdxError whose message names `path` and contains `what`.
  template <class F>
  static void expect_error(F&& f, const std::string& path, const std::string& what) {
    try {
      f();
      ADD_FAILURE() << "no error for " << path;
    } catch (const IdxError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(what), std::string::npos) << msg;
    }
  }

  std::string data_, scratch_;
};

TEST_F(IdxTest, ReadsTheRealDataSet) {
  for (const auto& [prefix, count] :
       {std::pair<std::string, int>{"train", 60000}, {"t10k", 10000}}) {
    const fmnist::Split s = fmnist::read_split(data_, prefix);
    EXPECT_EQ(s.images.count, count);
    EXPECT_EQ(s.images.rows, 28);
    EXPECT_EQ(s.images.cols, 28);
    ASSERT_EQ(s.images.pixels.size(), std::size_t(count) * 784);
    ASSERT_EQ(s.labels.labels.size(), std::size_t(count));
    // Fashion-MNIST is balanced: count / 10 images of each class.
    std::vector<int> per_class(10, 0);
    for (auto l : s.labels.labels) ++per_class[l];
    for (int c = 0; c < 10; ++c) EXPECT_EQ(per_class[c], count / 10) << prefix << " class " << c;
    // Images are neither blank nor saturated: mean ink between 10% and 50% of 255.
    double sum = 0;
    for (auto p : s.images.pixels) sum += p;
    const double mean = sum / double(s.images.pixels.size()) / 255.0;
    EXPECT_GT(mean, 0.1);
    EXPECT_LT(mean, 0.5);
  }
}

TEST_F(IdxTest, RejectsATruncatedGzipFile) {
  // The first third of the real compressed test images: a stream cut off mid-way.
  std::vector<char> gz = read_bytes(data_ + "/t10k-images-idx3-ubyte.gz");
  ASSERT_GT(gz.size(), 1000u);
  gz.resize(gz.size() / 3);
  const std::string path = scratch("cut-images-idx3-ubyte.gz");
  write_bytes(path, gz);
  expect_error([&] { fmnist::read_idx_images(path, 28, 28); }, path, "truncated");

  // Cut inside the gzip trailer only: every data byte is there but the stream is incomplete.
  std::vector<char> labels = read_bytes(data_ + "/t10k-labels-idx1-ubyte.gz");
  labels.resize(labels.size() - 4);
  const std::string trailer = scratch("trailer-labels-idx1-ubyte.gz");
  write_bytes(trailer, labels);
  expect_error([&] { fmnist::read_idx_labels(trailer); }, trailer, "truncated");
}

TEST_F(IdxTest, RejectsATruncatedRawFile) {
  const std::string path = scratch("raw-images-idx3-ubyte");
  write_idx(path, {0x803, 10, 28, 28}, 5 * 784);  // the header promises 10 images, 5 follow
  expect_error([&] { fmnist::read_idx_images(path, 28, 28); }, path, "truncated");
  write_idx(path, {0x803, 10}, 0);  // the file ends inside the header
  expect_error([&] { fmnist::read_idx_images(path, 28, 28); }, path, "header");
}

TEST_F(IdxTest, RejectsAWrongMagicNumber) {
  const std::string path = scratch("magic-images-idx3-ubyte");
  write_idx(path, {0x801, 10}, 10);  // a label file where images are expected
  expect_error([&] { fmnist::read_idx_images(path, 28, 28); }, path, "wrong magic number");
  const std::string gz = scratch("magic-labels-idx1-ubyte.gz");
  // The real (compressed) image file read as labels.
  write_bytes(gz, read_bytes(data_ + "/t10k-images-idx3-ubyte.gz"));
  expect_error([&] { fmnist::read_idx_labels(gz); }, gz, "wrong magic number");
}

TEST_F(IdxTest, RejectsWrongDimensionsAndExtraData) {
  const std::string path = scratch("dims-images-idx3-ubyte");
  write_idx(path, {0x803, 2, 32, 32}, 2 * 32 * 32);
  expect_error([&] { fmnist::read_idx_images(path, 28, 28); }, path, "wrong image dimensions");
  write_idx(path, {0x803, 2, 28, 28}, 3 * 28 * 28);
  expect_error([&] { fmnist::read_idx_images(path, 28, 28); }, path, "more data");
  const std::string labels = scratch("bad-labels-idx1-ubyte");
  write_idx(labels, {0x801, 4}, 4);  // label 7 is fine ...
  EXPECT_NO_THROW(fmnist::read_idx_labels(labels, 10));
  expect_error([&] { fmnist::read_idx_labels(labels, 5); }, labels,
               "is not a class");  // ... < 5 not
}

TEST_F(IdxTest, NamesMissingFilesAndMismatchedSplits) {
  const std::string missing = scratch("no-such-file");
  expect_error([&] { fmnist::read_idx_labels(missing); }, missing, "file not found");
  const std::string empty_dir = scratch("empty");
  std::filesystem::create_directories(empty_dir);
  expect_error([&] { fmnist::read_split(empty_dir, "train"); },
               empty_dir + "/train-images-idx3-ubyte.gz", "file not found");

  const std::string dir = scratch("mismatch");
  std::filesystem::create_directories(dir);
  write_idx(dir + "/x-images-idx3-ubyte", {0x803, 3, 28, 28}, 3 * 784);
  write_idx(dir + "/x-labels-idx1-ubyte", {0x801, 2}, 2);
  expect_error([&] { fmnist::read_split(dir, "x"); }, dir + "/x-labels-idx1-ubyte", "2 labels");
}

// ---- networks ---------------------------------------------------------------------------------

std::vector<Context> backends() {
  std::vector<Context> out{Context::reference()};
  if (curvkit::backend_available(curvkit::Backend::kokkos)) out.push_back(Context::kokkos());
  if (curvkit::backend_available(curvkit::Backend::cuda)) {
    curvkit::BackendArray<float> probe(Context::cuda(), 1);  // fails without a GPU
    if (probe.status().ok()) out.push_back(Context::cuda());
  }
  return out;
}

LayerSpec conv_layer(index_t size, index_t c_in, index_t c_out, index_t k, index_t pad,
                     Activation act, bool pool) {
  LayerSpec s;
  s.conv = true;
  s.height = s.width = size;
  s.c_in = c_in;
  s.d_out = c_out;
  s.kernel = k;
  s.pad = pad;
  s.act = act;
  s.pool = pool;
  return s;
}

LayerSpec linear_layer(index_t d_in, index_t d_out, Activation act, bool bias = true) {
  LayerSpec s;
  s.d_in = d_in;
  s.d_out = d_out;
  s.act = act;
  s.bias = bias;
  return s;
}

// 5x5x2 input; conv 3x3 pad 1 -> 3 channels, ReLU, pool (5x5 -> 2x2: the odd row and column are
// dropped); conv 2x2 pad 1 -> 2 channels (3x3 output), sigmoid, no pool; linear 18 -> 4;
// softmax cross-entropy over 4 classes.
ModelSpec tiny_cnn() {
  ModelSpec m;
  m.name = "tiny_cnn";
  m.input_features = 5 * 5 * 2;
  m.layers = {conv_layer(5, 2, 3, 3, 1, Activation::relu, true),
              conv_layer(2, 3, 2, 2, 1, Activation::sigmoid, false),
              linear_layer(18, 4, Activation::identity)};
  m.loss = fmnist::LossKind::softmax_xent;
  return m;
}

// 6 -> 4 ReLU -> 3 sigmoid (no bias) -> 6 logits, sigmoid BCE against the input.
ModelSpec tiny_autoencoder() {
  ModelSpec m;
  m.name = "tiny_autoencoder";
  m.input_features = 6;
  m.layers = {linear_layer(6, 4, Activation::relu), linear_layer(4, 3, Activation::sigmoid, false),
              linear_layer(3, 6, Activation::identity)};
  m.loss = fmnist::LossKind::sigmoid_bce;
  return m;
}

int num_classes(const ModelSpec& m) {
  return int(m.layers.back().d_out);
}

template <class T>
std::vector<T> to_host(const Context& ctx, curvkit::MatrixBatch<const T> v) {
  std::vector<T> h(std::size_t(v.rows * v.cols));
  EXPECT_EQ(v.ld, v.cols);
  if (!h.empty()) {
    EXPECT_TRUE(curvkit::copy_to_host(ctx, h.data(), v.data, h.size() * sizeof(T)).ok());
  }
  return h;
}

template <class T>
void upload(const Context& ctx, curvkit::BackendArray<T>& dst, const std::vector<T>& h) {
  ASSERT_EQ(dst.size(), h.size());
  ASSERT_TRUE(curvkit::copy_to_backend(ctx, dst.data(), h.data(), h.size() * sizeof(T)).ok());
}

// A network with random biases (zero biases would hide a missing bias gradient) and m random
// inputs in (0, 1) with random labels.
template <class T>
struct Fixture {
  Fixture(const Context& c, const ModelSpec& spec, index_t m_, std::uint64_t seed)
      : ctx(c), net(c, spec, m_, seed), m(m_) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(0.05, 0.95), b(-0.3, 0.3);
    for (std::size_t l = 0; l < net.num_layers(); ++l) {
      std::vector<T> bias(net.bias(l).size());
      for (auto& v : bias) v = T(b(rng));
      upload(ctx, net.bias(l), bias);
    }
    x.resize(std::size_t(m * spec.input_features));
    for (auto& v : x) v = T(u(rng));
    labels.resize(std::size_t(m));
    for (auto& l : labels) l = std::int32_t(rng() % std::uint64_t(num_classes(spec)));
    net.set_input(x, labels, m);
  }

  double mean_loss() {
    net.forward(m);
    net.loss(m, false);
    return net.last_mean_loss(m);
  }

  void gradients() {
    net.forward(m);
    net.loss(m, true);
    net.backward(m);
  }

  Context ctx;
  fmnist::Network<T> net;
  index_t m;
  std::vector<T> x;
  std::vector<std::int32_t> labels;
};

// Every weight and bias: backward's gradient against (L(p + h) - L(p - h)) / 2h.
void check_gradients(const Context& ctx, const ModelSpec& spec) {
  Fixture<double> f(ctx, spec, 3, 11);
  f.gradients();
  for (std::size_t l = 0; l < f.net.num_layers(); ++l) {
    for (bool is_bias : {false, true}) {
      auto& param = is_bias ? f.net.bias(l) : f.net.weights(l);
      if (param.size() == 0) continue;  // a layer without bias
      const std::vector<double> grad =
          (is_bias ? f.net.bias_grad(l) : f.net.weight_grad(l)).to_host();
      std::vector<double> p = param.to_host();
      double max_err = 0, max_grad = 0;
      for (std::size_t e = 0; e < p.size(); ++e) {
        const double h = 1e-5, saved = p[e];
        p[e] = saved + h;
        upload(ctx, param, p);
        const double up = f.mean_loss();
        p[e] = saved - h;
        upload(ctx, param, p);
        const double down = f.mean_loss();
        p[e] = saved;
        upload(ctx, param, p);
        const double fd = (up - down) / (2 * h);
        max_err = std::max(max_err, std::abs(fd - grad[e]));
        max_grad = std::max(max_grad, std::abs(grad[e]));
        // Central differences err by O(h^2) ~ 1e-10 here; 1e-7 leaves room for curvature.
        EXPECT_NEAR(grad[e], fd, 1e-7 + 1e-6 * std::abs(fd))
            << spec.name << " layer " << l << (is_bias ? " bias " : " weight ") << e;
      }
      EXPECT_GT(max_grad, 1e-4) << spec.name << " layer " << l << ": a vanishing gradient "
                                << "checks nothing";
    }
  }
}

std::string backend_name(const Context& ctx) {
  return curvkit::to_string(ctx.backend());
}

TEST(GradientCheck, ConvolutionsPoolingAndSoftmax) {
  for (const Context& ctx : backends()) {
    SCOPED_TRACE(backend_name(ctx));
    check_gradients(ctx, tiny_cnn());
  }
}

TEST(GradientCheck, LinearSigmoidNoBiasAndBinaryCrossEntropy) {
  for (const Context& ctx : backends()) {
    SCOPED_TRACE(backend_name(ctx));
    check_gradients(ctx, tiny_autoencoder());
  }
}

// [dW | db] = (1/m) g^T a for every layer (the convention the optimizers rely on), a ends in a
// column of ones exactly when the layer has a bias, and the first convolution's a is the
// im2col matrix of the input with columns (c_in, ky, kx).
void check_layout(const Context& ctx, const ModelSpec& spec) {
  Fixture<double> f(ctx, spec, 3, 5);
  f.gradients();
  curvkit::optim::Needs needs;
  needs.a = needs.g = true;
  const auto views = f.net.layer_views(f.m, needs);
  ASSERT_EQ(views.size(), spec.layers.size());
  for (std::size_t l = 0; l < views.size(); ++l) {
    SCOPED_TRACE(spec.name + " layer " + std::to_string(l));
    const auto& v = views[l];
    const bool bias = v.b.data != nullptr;
    const index_t d_in = v.w.cols, d_out = v.w.rows, rows = v.a.rows;
    EXPECT_EQ(v.m, f.m);
    EXPECT_EQ(v.output_layer, l + 1 == views.size());
    EXPECT_EQ(v.a.cols, d_in + (bias ? 1 : 0));
    EXPECT_EQ(v.g.rows, rows);
    EXPECT_EQ(v.g.cols, d_out);
    EXPECT_EQ(rows % f.m, 0);
    if (spec.layers[l].conv) {
      EXPECT_EQ(v.kind, curvkit::optim::LayerKind::conv2d);
      EXPECT_EQ(v.c_in * v.kh * v.kw, d_in);
    }
    const auto a = to_host(ctx, v.a), g = to_host(ctx, v.g);
    const auto dw = to_host(ctx, v.dw);
    for (index_t o = 0; o < d_out; ++o)
      for (index_t j = 0; j <= d_in; ++j) {
        if (j == d_in && !bias) continue;
        double s = 0;
        for (index_t r = 0; r < rows; ++r) s += g[r * d_out + o] * a[r * v.a.cols + j];
        s /= double(f.m);
        const double got = j < d_in ? dw[o * d_in + j] : to_host(ctx, v.db)[o];
        EXPECT_NEAR(got, s, 1e-12 * (1 + std::abs(s))) << "output " << o << " input " << j;
      }
    if (bias) {
      for (index_t r = 0; r < rows; ++r) EXPECT_EQ(a[r * v.a.cols + d_in], 1.0);
    }

    if (l == 0 && spec.layers[0].conv) {
      const LayerSpec& s = spec.layers[0];
      const index_t k = s.kernel, ho = s.height + 2 * s.pad - k + 1, wo = ho;
      for (index_t i = 0; i < f.m; ++i)
        for (index_t oy = 0; oy < ho; ++oy)
          for (index_t ox = 0; ox < wo; ++ox)
            for (index_t c = 0; c < s.c_in; ++c)
              for (index_t ky = 0; ky < k; ++ky)
                for (index_t kx = 0; kx < k; ++kx) {
                  const index_t iy = oy + ky - s.pad, ix = ox + kx - s.pad;
                  const bool inside = iy >= 0 && iy < s.height && ix >= 0 && ix < s.width;
                  const double want =
                      inside ? f.x[i * spec.input_features + (iy * s.width + ix) * s.c_in + c]
                             : 0.0;
                  const index_t row = i * ho * wo + oy * wo + ox, col = (c * k + ky) * k + kx;
                  EXPECT_EQ(a[row * v.a.cols + col], want);
                }
    }
  }
}

TEST(LayoutTest, LayerInputsAndOutputGradientsMatchTheGradients) {
  for (const Context& ctx : backends()) {
    SCOPED_TRACE(backend_name(ctx));
    check_layout(ctx, tiny_cnn());
    check_layout(ctx, tiny_autoencoder());
  }
}

// The sampled pass differs from the true one only in the label: at the output, g_sampled - g is
// e_label - e_y (softmax) or x - y (BCE) with y a valid sample, and dw_sampled = (1/m)
// g_sampled^T a.  Over many draws the samples' mean approaches the model's probabilities.
void check_sampled(const Context& ctx, const ModelSpec& spec) {
  const bool softmax = spec.loss == fmnist::LossKind::softmax_xent;
  Fixture<double> f(ctx, spec, 4, 9);
  f.gradients();
  curvkit::optim::Needs needs;
  needs.a = needs.g = needs.g_sampled = needs.grad_sampled = true;
  const index_t n = num_classes(spec), top = index_t(spec.layers.size()) - 1;

  std::vector<double> mean_sample(std::size_t(f.m * n), 0.0), prob;
  const int draws = 4000;
  for (int d = 0; d < draws; ++d) {
    f.net.backward_sampled(f.m, d == 0);
    const auto views = f.net.layer_views(f.m, needs);
    const auto g = to_host(ctx, views[top].g), gs = to_host(ctx, views[top].g_sampled);
    if (d == 0) {
      // dw_sampled = (1/m) g_sampled^T a for every layer.
      for (const auto& v : views) {
        const auto a = to_host(ctx, v.a), s = to_host(ctx, v.g_sampled);
        const auto dws = to_host(ctx, v.dw_sampled);
        for (index_t o = 0; o < v.w.rows; ++o)
          for (index_t j = 0; j < v.w.cols; ++j) {
            double want = 0;
            for (index_t r = 0; r < v.a.rows; ++r)
              want += s[r * v.w.rows + o] * a[r * v.a.cols + j];
            want /= double(f.m);
            EXPECT_NEAR(dws[o * v.w.cols + j], want, 1e-12 * (1 + std::abs(want)));
          }
      }
      // The model's probabilities: p = g + e_label (softmax), sigmoid = g + x (BCE).
      prob.resize(g.size());
      for (index_t i = 0; i < f.m; ++i)
        for (index_t c = 0; c < n; ++c) {
          const std::size_t e = std::size_t(i * n + c);
          prob[e] = g[e] + (softmax ? (c == f.labels[i] ? 1.0 : 0.0) : f.x[e]);
        }
    }
    for (index_t i = 0; i < f.m; ++i) {
      int ones = 0;
      for (index_t c = 0; c < n; ++c) {
        const std::size_t e = std::size_t(i * n + c);
        const double y = prob[e] - gs[e];  // the sampled label (indicator)
        ASSERT_NEAR(y, std::round(y), 1e-12) << "draw " << d << " sample " << i;
        ASSERT_TRUE(std::round(y) == 0.0 || std::round(y) == 1.0);
        ones += int(std::round(y));
        mean_sample[e] += std::round(y) / draws;
      }
      if (softmax) {
        ASSERT_EQ(ones, 1) << "one class per sample";
      }
    }
  }
  for (std::size_t e = 0; e < prob.size(); ++e) {
    const double se = std::sqrt(prob[e] * (1 - prob[e]) / draws);
    EXPECT_NEAR(mean_sample[e], prob[e], 5 * se + 1e-3) << "output " << e;
  }
}

TEST(LayoutTest, SampledLabelGradients) {
  for (const Context& ctx : backends()) {
    SCOPED_TRACE(backend_name(ctx));
    check_sampled(ctx, tiny_cnn());
    check_sampled(ctx, tiny_autoencoder());
  }
}

// ---- SMW-GN's cotangent backprops ------------------------------------------------------------

// The loss Hessian in the logits of sample i, from its logits (test formulas, not the ops').
std::vector<double> loss_hessian(const ModelSpec& spec, const double* z) {
  const index_t n = num_classes(spec);
  std::vector<double> h(std::size_t(n * n), 0.0);
  std::vector<double> p(static_cast<std::size_t>(n));
  if (spec.loss == fmnist::LossKind::softmax_xent) {
    double sum = 0;
    for (index_t c = 0; c < n; ++c) sum += std::exp(z[c]);
    for (index_t c = 0; c < n; ++c) p[c] = std::exp(z[c]) / sum;
    for (index_t c = 0; c < n; ++c)
      for (index_t d = 0; d < n; ++d) h[c * n + d] = (c == d ? p[c] : 0.0) - p[c] * p[d];
  } else {
    for (index_t c = 0; c < n; ++c) {
      const double s = 1 / (1 + std::exp(-z[c]));
      h[c * n + c] = s * (1 - s);
    }
  }
  return h;
}

// backward_cotangents(m, n2): the top layer's q rows (i R + r) are cotangents c_{i,r} with
// sum_r c_{i,r} c_{i,r}^T = H_i, and every layer's q is their backprop: the pseudo-sample's
// weight gradient sum_t q_{(i,r),t} a_{i,t}^T equals the finite difference of c_{i,r}^T z_L(x_i)
// in every weight and bias (c held at the base point).
void check_cotangents(const Context& ctx, const ModelSpec& spec) {
  Fixture<double> f(ctx, spec, 3, 21);
  const index_t n2 = 2, R = num_classes(spec), top = index_t(spec.layers.size()) - 1;
  f.gradients();
  f.net.backward_cotangents(f.m, n2);
  curvkit::optim::Needs needs;
  needs.a = true;
  needs.cotangents = n2;
  const auto views = f.net.layer_views(f.m, needs);
  const std::vector<double> z0 = f.net.logits().to_host();

  const auto c = to_host(ctx, views[top].q);  // (n2 R) x R: row (i R + r) = c_{i,r}
  ASSERT_EQ(views[top].q.rows, n2 * R);
  for (index_t i = 0; i < n2; ++i) {
    const std::vector<double> h = loss_hessian(spec, z0.data() + i * R);
    for (index_t a = 0; a < R; ++a)
      for (index_t b = 0; b < R; ++b) {
        double cc = 0;
        for (index_t r = 0; r < R; ++r) cc += c[(i * R + r) * R + a] * c[(i * R + r) * R + b];
        EXPECT_NEAR(cc, h[a * R + b], 1e-14) << "C C^T = H, sample " << i;
      }
  }

  // Every layer's q and a before any finite difference (each forward rewrites the a's).
  std::vector<std::vector<double>> qs, as;
  for (const auto& v : views) {
    qs.push_back(to_host(ctx, v.q));
    as.push_back(to_host(ctx, v.a));
  }
  for (std::size_t l = 0; l < views.size(); ++l) {
    const auto& v = views[l];
    const index_t d_out = v.w.rows, d_in = v.w.cols, S = v.a.rows / f.m;
    ASSERT_EQ(v.q.rows, n2 * R * S) << "layer " << l;
    ASSERT_EQ(v.q.cols, d_out);
    const std::vector<double>& q = qs[l];
    const std::vector<double>& a = as[l];
    for (bool is_bias : {false, true}) {
      auto& param = is_bias ? f.net.bias(l) : f.net.weights(l);
      if (param.size() == 0) continue;
      std::vector<double> p = param.to_host();
      double largest = 0;
      for (std::size_t e = 0; e < p.size(); ++e) {
        const index_t o = is_bias ? index_t(e) : index_t(e) / d_in;
        const index_t j = is_bias ? d_in : index_t(e) % d_in;  // a's ones column for the bias
        const double h = 1e-5, saved = p[e];
        std::vector<double> z[2];
        for (int side = 0; side < 2; ++side) {
          p[e] = saved + (side == 0 ? h : -h);
          upload(ctx, param, p);
          f.net.forward(f.m);
          z[side] = f.net.logits().to_host();
        }
        p[e] = saved;
        upload(ctx, param, p);
        for (index_t i = 0; i < n2; ++i)
          for (index_t r = 0; r < R; ++r) {
            double fd = 0, got = 0;
            for (index_t k = 0; k < R; ++k)
              fd += c[(i * R + r) * R + k] * (z[0][i * R + k] - z[1][i * R + k]) / (2 * h);
            for (index_t t = 0; t < S; ++t)
              got += q[((i * R + r) * S + t) * d_out + o] * a[(i * S + t) * v.a.cols + j];
            largest = std::max(largest, std::abs(got));
            EXPECT_NEAR(got, fd, 1e-8 + 1e-6 * std::abs(fd))
                << spec.name << " layer " << l << (is_bias ? " bias " : " weight ") << e
                << " pseudo-sample (" << i << ", " << r << ")";
          }
      }
      EXPECT_GT(largest, 1e-4) << spec.name << " layer " << l << ": nothing to check";
    }
  }
}

TEST(CotangentTest, BackpropsOfTheLossHessianFactor) {
  for (const Context& ctx : backends()) {
    SCOPED_TRACE(backend_name(ctx));
    check_cotangents(ctx, tiny_cnn());
    check_cotangents(ctx, tiny_autoencoder());
  }
}

TEST(CotangentTest, RejectsMoreSamplesThanTheBatch) {
  Fixture<double> f(Context::reference(), tiny_autoencoder(), 3, 2);
  f.gradients();
  EXPECT_THROW(f.net.backward_cotangents(f.m, 4), std::invalid_argument);
  EXPECT_THROW(f.net.backward_cotangents(f.m, 0), std::invalid_argument);
  curvkit::optim::Needs needs;
  needs.cotangents = 2;  // asked for before any backward_cotangents(m, 2)
  EXPECT_THROW(f.net.layer_views(f.m, needs), std::logic_error);
}

// ---- the training step's second pass -------------------------------------------------------

// SGD that asks for a second pass every step and records what finish_step() sees.
template <class T>
class SecondPassProbe final : public curvkit::optim::Optimizer<T> {
 public:
  explicit SecondPassProbe(curvkit::optim::SecondPass pass) : pass_(pass) { this->lr_ = 0.005; }
  std::string_view name() const override { return "probe"; }
  curvkit::optim::Needs needs() const override {
    curvkit::optim::Needs n;
    n.second_pass = pass_;
    return n;
  }
  curvkit::Status init(const Context&, std::span<const curvkit::optim::LayerView<T>>) override {
    return curvkit::Status::success();
  }
  curvkit::Status step(const Context& ctx,
                       std::span<const curvkit::optim::LayerView<T>> layers) override {
    for (const auto& l : layers) {
      if (auto st = curvkit::axpby<T>(ctx, -this->lr_, l.dw, 1.0, l.w, l.w); !st.ok()) return st;
      if (l.b.data == nullptr) continue;
      if (auto st = curvkit::axpby<T>(ctx, -this->lr_, l.db, 1.0, l.b, l.b); !st.ok()) return st;
    }
    ++this->k_;
    return curvkit::Status::success();
  }
  curvkit::Status finish_step(const Context& ctx,
                              std::span<const curvkit::optim::LayerView<T>> layers) override {
    ++finished;
    const auto& top = layers.back();
    losses = top.losses.data != nullptr ? to_host<T>(ctx, top.losses) : std::vector<T>{};
    z_rows.clear();
    for (const auto& l : layers)
      z_rows.push_back(l.z.data != nullptr && l.g.data != nullptr ? l.z.rows : -1);
    return curvkit::Status::success();
  }
  int finished = 0;
  std::vector<T> losses;
  std::vector<index_t> z_rows;

 private:
  curvkit::optim::SecondPass pass_;
};

// Eight random 28 x 28 images with labels, as the trainer's data.
fmnist::Split random_split(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  fmnist::Split s;
  s.images.count = s.labels.count = 8;
  s.images.rows = s.images.cols = 28;
  s.images.pixels.resize(8 * 784);
  for (auto& p : s.images.pixels) p = std::uint8_t(rng() % 256);
  s.labels.labels.resize(8);
  for (auto& l : s.labels.labels) l = std::uint8_t(rng() % 10);
  return s;
}

// train_step's second pass: the same batch at the updated weights, losses (forward) or z and g
// (forward_backward) handed to finish_step, and nothing of it in the epoch's statistics.
TEST(TrainStep, SecondPassSeesTheUpdatedWeights) {
  using T = double;
  using curvkit::optim::SecondPass;
  for (const Context& ctx : backends()) {
    SCOPED_TRACE(backend_name(ctx));
    const fmnist::DeviceSplit data(ctx, random_split(3));
    const index_t m = 8;
    for (SecondPass pass : {SecondPass::forward, SecondPass::forward_backward}) {
      fmnist::Network<T> net(ctx, fmnist::mlp_spec(), m, 5);
      net.load_batch(data, 0, m);
      net.forward(m);
      net.loss(m, false, false);
      const double before = net.last_mean_loss(m);
      SecondPassProbe<T> probe(pass);
      fmnist::train_step<T>(ctx, net, probe, data, 0, m);
      EXPECT_EQ(probe.finished, 1);
      const fmnist::Stats st = net.take_stats();
      EXPECT_EQ(st.samples, m) << "the second pass must not count";
      EXPECT_NEAR(st.mean_loss(), before, 1e-12 * std::abs(before));
      net.forward(m);
      net.loss(m, false, false);
      const double after = net.last_mean_loss(m);
      EXPECT_LT(after, before) << "an SGD step on the batch";
      if (pass == SecondPass::forward) {
        ASSERT_EQ(probe.losses.size(), std::size_t(m));
        double mean = 0;
        for (T v : probe.losses) mean += double(v) / double(m);
        EXPECT_NEAR(mean, after, 1e-12 * after) << "losses at the updated weights";
        for (index_t r : probe.z_rows) EXPECT_EQ(r, -1);
      } else {
        EXPECT_TRUE(probe.losses.empty());
        for (index_t r : probe.z_rows) EXPECT_EQ(r, m) << "z and g of every layer";
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  curvkit::ScopeGuard guard;  // Kokkos
  return RUN_ALL_TESTS();
}
