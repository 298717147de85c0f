// Public entry points of the elementwise family (elementwise.hpp): validate every argument once,
// describe the op as a map (src/elementwise_backends.hpp) or a sum of squares, and dispatch to
// the backend the Context names.
#include <cmath>
#include <string>
#include <vector>

#include "checks.hpp"
#include "elementwise_backends.hpp"

namespace curvkit {
namespace {

using detail::check_shape;
using detail::overlaps;
using detail::view_name;
using device::MapKind;

template <class T>
MatrixBatch<T> mutable_view(const MatrixBatch<const T>& v) {
  return {const_cast<T*>(v.data), v.batch, v.rows, v.cols, v.ld, v.stride};
}

// One operand of a map: its groups (as mutable views; only outputs are written), its slot, and
// whether it is written and whether it may be left out (data == nullptr in every group).
template <class T>
struct Operand {
  const char* name;
  std::vector<MatrixBatch<T>> groups;
  int slot;
  bool output;
  bool optional;
};

template <class T>
Operand<T> input(const char* name, GroupedBatch<const T> v, int slot, bool optional = false) {
  Operand<T> o{name, {}, slot, false, optional};
  for (const auto& g : v) o.groups.push_back(mutable_view(g));
  return o;
}

template <class T>
Operand<T> output(const char* name, GroupedBatch<T> v, int slot) {
  return {name, std::vector<MatrixBatch<T>>(v.begin(), v.end()), slot, true, false};
}

bool finite(double x) {
  return std::isfinite(x);
}

template <class T>
bool same_view(const MatrixBatch<T>& x, const MatrixBatch<T>& y) {
  return x.data == y.data && x.ld == y.ld && (x.batch <= 1 || x.stride == y.stride);
}

bool left_out(const auto& operand) {
  for (const auto& g : operand.groups)
    if (g.data != nullptr) return false;
  return true;
}

// Validates the operands against the first output's shapes and aliasing rules, then runs the map.
template <class T>
Status run_map(const char* op, const Context& ctx, MapCall<T> call,
               const std::vector<Operand<T>>& operands) {
  const Operand<T>* shape = nullptr;
  for (const auto& o : operands)
    if (o.output && shape == nullptr) shape = &o;
  const std::size_t groups = shape->groups.size();
  const bool grouped = groups != 1;
  for (const auto& o : operands) {
    if (o.groups.size() != groups)
      return Status::invalid_argument(
          op, std::string(o.name) + " has " + std::to_string(o.groups.size()) +
                  " groups but must have " + shape->name + "'s (" + std::to_string(groups) + ")");
    if (o.optional && left_out(o)) continue;
    for (std::size_t g = 0; g < groups; ++g) {
      const auto& z = shape->groups[g];
      CURVKIT_RETURN_IF_ERROR(
          check_shape(op, o.groups[g], view_name(o.name, grouped, g), z.batch, z.rows, z.cols));
    }
  }
  // An output may be exactly an input of its own group; everything else must be apart.
  for (const auto& out : operands) {
    if (!out.output) continue;
    for (std::size_t g = 0; g < groups; ++g)
      for (const auto& other : operands)
        for (std::size_t h = 0; h < groups; ++h) {
          if (&other == &out && h == g) continue;
          if (other.optional && left_out(other)) continue;
          const auto& x = out.groups[g];
          const auto& y = other.groups[h];
          if (!other.output && g == h && same_view(x, y)) continue;
          if (overlaps(x, y))
            return Status::invalid_argument(
                op, view_name(out.name, grouped, g) + " overlaps " +
                        view_name(other.name, grouped, h) +
                        " in memory (an output may only be exactly one of its group's inputs)");
        }
  }
  std::vector<MapGroup<T>> map(groups);
  index_t first = 0;
  for (std::size_t g = 0; g < groups; ++g) {
    const auto& z = shape->groups[g];
    map[g].batch = z.batch;
    map[g].rows = z.rows;
    map[g].cols = z.cols;
    map[g].first = first;
    first += z.batch;
    for (const auto& o : operands)
      if (!(o.optional && left_out(o)))
        map[g].slot[o.slot] = {o.groups[g].data, o.groups[g].ld, o.groups[g].stride};
  }
  call.groups = map;
  CURVKIT_DISPATCH(elementwise_map, ctx, call);
}

Status need_array(const char* op, const void* p, const char* name, index_t batch) {
  if (p == nullptr && batch > 0)
    return Status::invalid_argument(op,
                                    std::string(name) + " is null (it needs one value per matrix)");
  return Status::success();
}

}  // namespace

template <class T>
Status axpby(const Context& ctx, double a, GroupedBatch<const T> x, double b,
             GroupedBatch<const T> y, GroupedBatch<T> z) {
  if (!finite(a) || !finite(b)) return Status::invalid_argument("axpby", "a and b must be finite");
  MapCall<T> call;
  call.kind = MapKind::axpby;
  call.k.c[0] = a;
  call.k.c[1] = b;
  // A zero coefficient leaves its operand out (it is not read and may be empty).
  std::vector<Operand<T>> ops{output("z", z, 2)};
  if (a != 0) ops.push_back(input("x", x, 0));
  if (b != 0) ops.push_back(input("y", y, 1));
  return run_map("axpby", ctx, call, ops);
}

template <class T>
Status axpby_scaled(const Context& ctx, double a, const T* scale, GroupedBatch<const T> x, double b,
                    GroupedBatch<const T> y, GroupedBatch<T> z) {
  const char* op = "axpby_scaled";
  if (!finite(a) || !finite(b)) return Status::invalid_argument(op, "a and b must be finite");
  if (scale == nullptr) return Status::invalid_argument(op, "scale is null (it needs one value)");
  MapCall<T> call;
  call.kind = MapKind::axpby_scaled;
  call.k.c[0] = a;
  call.k.c[1] = b;
  call.shared = scale;
  call.shared_count = 1;
  std::vector<Operand<T>> ops{output("z", z, 2), input("x", x, 0)};
  if (b != 0) ops.push_back(input("y", y, 1));
  return run_map(op, ctx, call, ops);
}

template <class T>
Status lm_damping_update(const Context& ctx, const T* f0, const T* f1, const T* gv, const T* vv,
                         index_t count, const LmDampingRule& r, T* state, index_t copies) {
  const char* op = "lm_damping_update";
  if (!(r.lr > 0) || !finite(r.lr)) return Status::invalid_argument(op, "rule.lr must be > 0");
  if (!(r.boost >= 1) || !finite(r.boost))
    return Status::invalid_argument(op, "rule.boost must be finite and >= 1");
  if (!(r.drop > 0 && r.drop <= 1))
    return Status::invalid_argument(op, "rule.drop must be in (0, 1]");
  if (!(r.epsilon > 0 && r.epsilon < 0.5))
    return Status::invalid_argument(op, "rule.epsilon must be in (0, 1/2)");
  if (!(r.floor >= 0) || !finite(r.floor))
    return Status::invalid_argument(op, "rule.floor must be finite and >= 0");
  if (count < 0 || copies < 0) return Status::invalid_argument(op, "count and copies must be >= 0");
  if (f0 == nullptr || f1 == nullptr || state == nullptr)
    return Status::invalid_argument(op, "f0, f1 and state must not be null");
  if (count > 0 && (gv == nullptr || vv == nullptr))
    return Status::invalid_argument(op, "gv and vv are null (they need count values)");
  CURVKIT_DISPATCH(lm_damping_update, ctx, f0, f1, gv, vv, count, r, state, copies);
}

template <class T>
Status fill(const Context& ctx, double value, GroupedBatch<T> z) {
  MapCall<T> call;
  call.kind = MapKind::fill;
  call.k.c[0] = value;
  return run_map("fill", ctx, call, {output("z", z, 2)});
}

template <class T>
Status add_diagonal(const Context& ctx, double c, const T* shift, GroupedBatch<T> z) {
  if (!finite(c)) return Status::invalid_argument("add_diagonal", "c must be finite");
  MapCall<T> call;
  call.kind = MapKind::add_diagonal;
  call.k.c[0] = c;
  call.pm0 = shift;
  return run_map("add_diagonal", ctx, call, {output("z", z, 2)});
}

template <class T>
Status add_scalar(const Context& ctx, double c, const T* shift, GroupedBatch<T> z) {
  if (!finite(c)) return Status::invalid_argument("add_scalar", "c must be finite");
  MapCall<T> call;
  call.kind = MapKind::add_scalar;
  call.k.c[0] = c;
  call.pm0 = shift;
  return run_map("add_scalar", ctx, call, {output("z", z, 2)});
}

template <class T>
Status square_ema(const Context& ctx, double beta, double c, GroupedBatch<const T> x,
                  GroupedBatch<T> s) {
  if (!finite(beta) || !finite(c))
    return Status::invalid_argument("square_ema", "beta and c must be finite");
  MapCall<T> call;
  call.kind = MapKind::square_ema;
  call.k.c[0] = beta;
  call.k.c[1] = c;
  return run_map("square_ema", ctx, call, {output("s", s, 2), input("x", x, 0)});
}

template <class T>
Status diag_precondition(const Context& ctx, GroupedBatch<const T> x, GroupedBatch<const T> s,
                         double lambda, DiagPower power, GroupedBatch<T> z) {
  const char* op = "diag_precondition";
  if (!(lambda >= 0) || !finite(lambda))
    return Status::invalid_argument(op, "lambda must be finite and >= 0");
  if (power != DiagPower::one && power != DiagPower::half)
    return Status::invalid_argument(op, "power is not a DiagPower value");
  MapCall<T> call;
  call.kind = MapKind::diag_precondition;
  call.k.c[0] = lambda;
  call.k.c[1] = power == DiagPower::one ? 0 : 1;
  return run_map(op, ctx, call, {output("z", z, 2), input("x", x, 0), input("s", s, 1)});
}

template <class T>
Status adam_direction(const Context& ctx, GroupedBatch<const T> g, GroupedBatch<T> m,
                      GroupedBatch<T> v, GroupedBatch<T> d, const AdamStep& st) {
  const char* op = "adam_direction";
  if (!(st.beta1 >= 0 && st.beta1 < 1) || !(st.beta2 >= 0 && st.beta2 < 1))
    return Status::invalid_argument(op, "step.beta1 and step.beta2 must be in [0, 1)");
  if (!(st.epsilon >= 0) || !finite(st.epsilon))
    return Status::invalid_argument(op, "step.epsilon must be finite and >= 0");
  if (st.t < 1)
    return Status::invalid_argument(op, "step.t (" + std::to_string(st.t) + ") must be >= 1");
  MapCall<T> call;
  call.kind = MapKind::adam;
  call.k.c[0] = st.beta1;
  call.k.c[1] = st.beta2;
  call.k.c[2] = st.epsilon;
  call.k.c[3] = 1 / (1 - std::pow(st.beta1, double(st.t)));
  call.k.c[4] = 1 / (1 - std::pow(st.beta2, double(st.t)));
  return run_map(op, ctx, call,
                 {output("d", d, 2), output("m", m, 1), output("v", v, 3), input("g", g, 0)});
}

// sum_products and sum_squares (x = y), validated under the name of the op called.
template <class T>
Status checked_sum_products(const char* op, const Context& ctx, GroupedBatch<const T> x,
                            GroupedBatch<const T> y, T* out, bool accumulate) {
  const bool grouped = x.size() != 1;
  if (y.size() != x.size())
    return Status::invalid_argument(op, "y has " + std::to_string(y.size()) +
                                            " groups but must have x's (" +
                                            std::to_string(x.size()) + ")");
  for (std::size_t g = 0; g < x.size(); ++g) {
    if (auto e = detail::check_view(x[g], view_name("x", grouped, g)); !e.empty())
      return Status::invalid_argument(op, e);
    CURVKIT_RETURN_IF_ERROR(
        check_shape(op, y[g], view_name("y", grouped, g), x[g].batch, x[g].rows, x[g].cols));
  }
  CURVKIT_RETURN_IF_ERROR(need_array(op, out, "out", total_batch(x)));
  CURVKIT_DISPATCH(sum_products, ctx, x, y, out, accumulate);
}

template <class T>
Status sum_squares(const Context& ctx, GroupedBatch<const T> x, T* out, bool accumulate) {
  return checked_sum_products<T>("sum_squares", ctx, x, x, out, accumulate);
}

template <class T>
Status clip_by_quadratic(const Context& ctx, const T* q, index_t count, double bound,
                         GroupedBatch<T> z) {
  const char* op = "clip_by_quadratic";
  if (!(bound >= 0) || !finite(bound))
    return Status::invalid_argument(op, "bound must be finite and >= 0");
  if (count < 0) return Status::invalid_argument(op, "count must be >= 0");
  if (q == nullptr && count > 0)
    return Status::invalid_argument(op, "q is null (it needs count values)");
  MapCall<T> call;
  call.kind = MapKind::clip_by_quadratic;
  call.k.c[0] = bound;
  call.shared = q;
  call.shared_count = count;
  return run_map(op, ctx, call, {output("z", z, 2)});
}

template <class T>
Status scale_by_norm_ratio(const Context& ctx, const T* num_sq, const T* den_sq, double eps,
                           GroupedBatch<T> z) {
  const char* op = "scale_by_norm_ratio";
  if (!(eps >= 0) || !finite(eps))
    return Status::invalid_argument(op, "eps must be finite and >= 0");
  CURVKIT_RETURN_IF_ERROR(need_array(op, num_sq, "num_sq", total_batch(z)));
  CURVKIT_RETURN_IF_ERROR(need_array(op, den_sq, "den_sq", total_batch(z)));
  MapCall<T> call;
  call.kind = MapKind::scale_by_ratio;
  call.k.c[0] = eps;
  call.pm0 = num_sq;
  call.pm1 = den_sq;
  return run_map(op, ctx, call, {output("z", z, 2)});
}

template <class T>
Status copy_if_ok(const Context& ctx, GroupedBatch<const T> x, const int* info, GroupedBatch<T> z) {
  const char* op = "copy_if_ok";
  CURVKIT_RETURN_IF_ERROR(need_array(op, info, "info", total_batch(z)));
  MapCall<T> call;
  call.kind = MapKind::copy_if_ok;
  call.info = info;
  return run_map(op, ctx, call, {output("z", z, 2), input("x", x, 0)});
}

// Uniform calls: a group of one.
template <class T>
Status axpby_scaled(const Context& ctx, double a, const T* scale, MatrixBatch<const T> x, double b,
                    MatrixBatch<const T> y, MatrixBatch<T> z) {
  return axpby_scaled<T>(ctx, a, scale, {&x, 1}, b, {&y, 1}, {&z, 1});
}
template <class T>
Status axpby(const Context& ctx, double a, MatrixBatch<const T> x, double b, MatrixBatch<const T> y,
             MatrixBatch<T> z) {
  return axpby<T>(ctx, a, {&x, 1}, b, {&y, 1}, {&z, 1});
}
template <class T>
Status fill(const Context& ctx, double value, MatrixBatch<T> z) {
  return fill<T>(ctx, value, GroupedBatch<T>(&z, 1));
}
template <class T>
Status add_diagonal(const Context& ctx, double c, const T* shift, MatrixBatch<T> z) {
  return add_diagonal<T>(ctx, c, shift, GroupedBatch<T>(&z, 1));
}
template <class T>
Status add_scalar(const Context& ctx, double c, const T* shift, MatrixBatch<T> z) {
  return add_scalar<T>(ctx, c, shift, GroupedBatch<T>(&z, 1));
}
template <class T>
Status square_ema(const Context& ctx, double beta, double c, MatrixBatch<const T> x,
                  MatrixBatch<T> s) {
  return square_ema<T>(ctx, beta, c, {&x, 1}, {&s, 1});
}
template <class T>
Status diag_precondition(const Context& ctx, MatrixBatch<const T> x, MatrixBatch<const T> s,
                         double lambda, DiagPower power, MatrixBatch<T> z) {
  return diag_precondition<T>(ctx, {&x, 1}, {&s, 1}, lambda, power, {&z, 1});
}
template <class T>
Status adam_direction(const Context& ctx, MatrixBatch<const T> g, MatrixBatch<T> m,
                      MatrixBatch<T> v, MatrixBatch<T> d, const AdamStep& step) {
  return adam_direction<T>(ctx, {&g, 1}, {&m, 1}, {&v, 1}, {&d, 1}, step);
}
template <class T>
Status sum_squares(const Context& ctx, MatrixBatch<const T> x, T* out, bool accumulate) {
  return sum_squares<T>(ctx, GroupedBatch<const T>(&x, 1), out, accumulate);
}
template <class T>
Status sum_products(const Context& ctx, GroupedBatch<const T> x, GroupedBatch<const T> y, T* out,
                    bool accumulate) {
  return checked_sum_products<T>("sum_products", ctx, x, y, out, accumulate);
}
template <class T>
Status sum_products(const Context& ctx, MatrixBatch<const T> x, MatrixBatch<const T> y, T* out,
                    bool accumulate) {
  return checked_sum_products<T>("sum_products", ctx, GroupedBatch<const T>(&x, 1),
                                 GroupedBatch<const T>(&y, 1), out, accumulate);
}
template <class T>
Status clip_by_quadratic(const Context& ctx, const T* q, index_t count, double bound,
                         MatrixBatch<T> z) {
  return clip_by_quadratic<T>(ctx, q, count, bound, GroupedBatch<T>(&z, 1));
}
template <class T>
Status scale_by_norm_ratio(const Context& ctx, const T* num_sq, const T* den_sq, double eps,
                           MatrixBatch<T> z) {
  return scale_by_norm_ratio<T>(ctx, num_sq, den_sq, eps, GroupedBatch<T>(&z, 1));
}
template <class T>
Status copy_if_ok(const Context& ctx, MatrixBatch<const T> x, const int* info, MatrixBatch<T> z) {
  return copy_if_ok<T>(ctx, {&x, 1}, info, {&z, 1});
}

#define CURVKIT_INSTANTIATE_EW(T)                                                                  \
  template Status axpby_scaled<T>(const Context&, double, const T*, MatrixBatch<const T>, double,  \
                                  MatrixBatch<const T>, MatrixBatch<T>);                           \
  template Status axpby_scaled<T>(const Context&, double, const T*, GroupedBatch<const T>, double, \
                                  GroupedBatch<const T>, GroupedBatch<T>);                         \
  template Status lm_damping_update<T>(const Context&, const T*, const T*, const T*, const T*,     \
                                       index_t, const LmDampingRule&, T*, index_t);                \
  template Status axpby<T>(const Context&, double, MatrixBatch<const T>, double,                   \
                           MatrixBatch<const T>, MatrixBatch<T>);                                  \
  template Status axpby<T>(const Context&, double, GroupedBatch<const T>, double,                  \
                           GroupedBatch<const T>, GroupedBatch<T>);                                \
  template Status fill<T>(const Context&, double, MatrixBatch<T>);                                 \
  template Status fill<T>(const Context&, double, GroupedBatch<T>);                                \
  template Status add_diagonal<T>(const Context&, double, const T*, MatrixBatch<T>);               \
  template Status add_diagonal<T>(const Context&, double, const T*, GroupedBatch<T>);              \
  template Status add_scalar<T>(const Context&, double, const T*, MatrixBatch<T>);                 \
  template Status add_scalar<T>(const Context&, double, const T*, GroupedBatch<T>);                \
  template Status square_ema<T>(const Context&, double, double, MatrixBatch<const T>,              \
                                MatrixBatch<T>);                                                   \
  template Status square_ema<T>(const Context&, double, double, GroupedBatch<const T>,             \
                                GroupedBatch<T>);                                                  \
  template Status diag_precondition<T>(const Context&, MatrixBatch<const T>, MatrixBatch<const T>, \
                                       double, DiagPower, MatrixBatch<T>);                         \
  template Status diag_precondition<T>(const Context&, GroupedBatch<const T>,                      \
                                       GroupedBatch<const T>, double, DiagPower, GroupedBatch<T>); \
  template Status adam_direction<T>(const Context&, MatrixBatch<const T>, MatrixBatch<T>,          \
                                    MatrixBatch<T>, MatrixBatch<T>, const AdamStep&);              \
  template Status adam_direction<T>(const Context&, GroupedBatch<const T>, GroupedBatch<T>,        \
                                    GroupedBatch<T>, GroupedBatch<T>, const AdamStep&);            \
  template Status sum_squares<T>(const Context&, MatrixBatch<const T>, T*, bool);                  \
  template Status sum_squares<T>(const Context&, GroupedBatch<const T>, T*, bool);                 \
  template Status sum_products<T>(const Context&, MatrixBatch<const T>, MatrixBatch<const T>, T*,  \
                                  bool);                                                           \
  template Status sum_products<T>(const Context&, GroupedBatch<const T>, GroupedBatch<const T>,    \
                                  T*, bool);                                                       \
  template Status clip_by_quadratic<T>(const Context&, const T*, index_t, double, MatrixBatch<T>); \
  template Status clip_by_quadratic<T>(const Context&, const T*, index_t, double,                  \
                                       GroupedBatch<T>);                                           \
  template Status scale_by_norm_ratio<T>(const Context&, const T*, const T*, double,               \
                                         MatrixBatch<T>);                                          \
  template Status scale_by_norm_ratio<T>(const Context&, const T*, const T*, double,               \
                                         GroupedBatch<T>);                                         \
  template Status copy_if_ok<T>(const Context&, MatrixBatch<const T>, const int*, MatrixBatch<T>); \
  template Status copy_if_ok<T>(const Context&, GroupedBatch<const T>, const int*, GroupedBatch<T>);

CURVKIT_INSTANTIATE_EW(float)
CURVKIT_INSTANTIATE_EW(double)

}  // namespace curvkit
