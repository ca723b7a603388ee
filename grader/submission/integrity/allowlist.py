"""The names a hand-written backward pass may use: the data of grader.submission.integrity's allow list.

Generated once from torch 2.13's namespaces, then read by hand: everything that computes a forward
value is here; autograd, hooks, storage and memory access, devices, sparse and quantised internals,
file I/O and private names are not. Each list is a string of words, to keep the file readable.
Then Python's side: the builtins computing needs, plain dunders, the methods of containers and
strings, and the modules a submission may import with the attributes each gives.
"""

import builtins
import types

# Methods and attributes of a tensor (and of torch.Tensor).
TENSOR = frozenset("""
T abs abs_ absolute absolute_ acos acos_ acosh acosh_ add add_ addbmm addbmm_ addcdiv addcdiv_ addcmul
addcmul_ addmm addmm_ addmv addmv_ addr addr_ all allclose amax amin aminmax angle any arccos arccos_ arccosh
arccosh_ arcsin arcsin_ arcsinh arcsinh_ arctan arctan2 arctan2_ arctan_ arctanh arctanh_ argmax argmin
argsort argwhere asin asin_ asinh asinh_ atan atan2 atan2_ atan_ atanh atanh_ baddbmm baddbmm_ bernoulli
bernoulli_ bfloat16 bincount bitwise_and bitwise_and_ bitwise_left_shift bitwise_left_shift_ bitwise_not
bitwise_not_ bitwise_or bitwise_or_ bitwise_right_shift bitwise_right_shift_ bitwise_xor bitwise_xor_ bmm bool
broadcast_to byte cauchy_ cdouble ceil ceil_ cfloat chalf char cholesky cholesky_inverse cholesky_solve chunk
clamp clamp_ clamp_max clamp_max_ clamp_min clamp_min_ clip clip_ clone conj conj_physical conj_physical_
contiguous copy_ copysign copysign_ corrcoef cos cos_ cosh cosh_ count_nonzero cov cpu cross cummax cummin
cumprod cumprod_ cumsum cumsum_ data deg2rad deg2rad_ dense_dim det detach detach_ device diag diag_embed
diagflat diagonal diagonal_scatter diff digamma digamma_ dim dist div div_ divide divide_ dot double dsplit
dtype eig element_size eq eq_ equal erf erf_ erfc erfc_ erfinv erfinv_ exp exp2 exp2_ exp_ expand expand_as
expm1 expm1_ exponential_ fill_ fill_diagonal_ fix fix_ flatten flip fliplr flipud float float_power
float_power_ floor floor_ floor_divide floor_divide_ fmax fmin fmod fmod_ frac frac_ frexp gather gcd gcd_ ge
ge_ geometric_ geqrf ger greater greater_ greater_equal greater_equal_ gt gt_ half hardshrink heaviside
heaviside_ histc histogram hsplit hypot hypot_ i0 i0_ igamma igamma_ igammac igammac_ imag index index_add
index_add_ index_copy index_copy_ index_fill index_fill_ index_put index_put_ index_reduce index_reduce_
index_select indices inner int inverse is_complex is_conj is_contiguous is_cpu is_floating_point is_meta
is_neg is_nonzero is_pinned is_same_size is_shared is_signed is_xla isclose isfinite isinf isnan isneginf
isposinf isreal istft item itemsize kron kthvalue layout lcm lcm_ ldexp ldexp_ le le_ lerp lerp_ less less_
less_equal less_equal_ lgamma lgamma_ log log10 log10_ log1p log1p_ log2 log2_ log_ log_normal_ log_softmax
logaddexp logaddexp2 logcumsumexp logdet logical_and logical_and_ logical_not logical_not_ logical_or
logical_or_ logical_xor logical_xor_ logit logit_ logsumexp long lstsq lt lt_ lu lu_solve mT masked_fill
masked_fill_ masked_scatter masked_scatter_ masked_select matmul matrix_exp matrix_power max maximum mean
median min minimum mm mode moveaxis movedim msort mul mul_ multinomial multiply multiply_ mv mvlgamma
mvlgamma_ name nan_to_num nan_to_num_ nanmean nanmedian nanquantile nansum narrow narrow_copy ndim ndimension
ne ne_ neg neg_ negative negative_ nelement new_empty new_empty_strided new_full new_ones new_tensor new_zeros
nextafter nextafter_ nonzero nonzero_static norm normal_ not_equal not_equal_ numel numpy orgqr ormqr outer
permute pinverse polygamma polygamma_ positive pow pow_ prelu prod put put_ qr qscheme quantile rad2deg
rad2deg_ random_ ravel real reciprocal reciprocal_ relu relu_ remainder remainder_ renorm renorm_ repeat
repeat_interleave reshape reshape_as resolve_conj resolve_neg roll rot90 round round_ rsqrt rsqrt_ scatter
scatter_ scatter_add scatter_add_ scatter_reduce scatter_reduce_ select select_scatter sgn sgn_ shape short
sigmoid sigmoid_ sign sign_ signbit sin sin_ sinc sinc_ sinh sinh_ size slice_inverse slice_scatter slogdet
softmax solve sort split split_with_sizes sqrt sqrt_ square square_ squeeze squeeze_ std stft stride sub sub_
subtract subtract_ sum sum_to_size svd swapaxes swapaxes_ swapdims swapdims_ symeig t t_ take take_along_dim
tan tan_ tanh tanh_ tensor_split tile to to_dense tolist topk trace transpose transpose_ triangular_solve tril
tril_ triu triu_ true_divide true_divide_ trunc trunc_ type type_as unbind unflatten unfold uniform_ unique
unique_consecutive unsqueeze unsqueeze_ values var vdot view view_as vsplit where xlogy xlogy_ zero_
""".split())

# Public tensor attributes that are off the list: a name the student defines never exempts these.
TENSOR_EXCLUDED = frozenset("""
H adjoint apply_ as_strided as_strided_ as_strided_scatter as_subclass backward ccol_indices coalesce
col_indices const_data_ptr crow_indices cuda data_ptr dequantize dim_order get_device grad grad_dtype grad_fn
hash_tensor int_repr ipu is_coalesced is_cuda is_distributed is_inference is_ipu is_leaf is_maia is_mkldnn
is_mps is_mtia is_nested is_quantized is_set_to is_sparse is_sparse_csr is_vulkan is_xpu mH map2_ map_
module_load mtia nbytes new output_nr pin_memory q_per_channel_axis q_per_channel_scales
q_per_channel_zero_points q_scale q_zero_point record_stream register_hook register_post_accumulate_grad_hook
reinforce requires_grad requires_grad_ resize resize_ resize_as resize_as_ resize_as_sparse_ retain_grad
retains_grad row_indices set_ share_memory_ smm sparse_dim sparse_mask sparse_resize_ sparse_resize_and_clear_
sspaddmm storage storage_offset storage_type to_mkldnn to_padded_tensor to_sparse to_sparse_bsc to_sparse_bsr
to_sparse_coo to_sparse_csc to_sparse_csr unsafe_chunk unsafe_split unsafe_split_with_sizes untyped_storage
volatile xpu
""".split())

# Private tensor attributes (autograd state, internals): likewise never exempted.
TENSOR_PRIVATE = frozenset("""
_addmm_activation _autocast_to_full_precision _autocast_to_reduced_precision _backward_hooks _base _cdata
_clear_non_serializable_cached_data _coalesced_ _conj _conj_physical _dimI _dimV _dtensor__new__ _fix_weakref
_grad _grad_fn _has_symbolic_sizes_strides _indices _is_all_true _is_any_true _is_view _is_zerotensor
_lazy_clone _make_subclass _make_wrapper_subclass _neg_view _nested_tensor_size _nested_tensor_storage_offsets
_nested_tensor_strides _nnz _philox_normal_ _philox_uniform_ _post_accumulate_grad_hooks _python_dispatch
_reduce_ex_internal _rev_view_func_unsafe _sparse_mask_projection _to_dense _to_sparse _to_sparse_bsc
_to_sparse_bsr _to_sparse_csc _to_sparse_csr _typed_storage _use_count _values _version _view_func
_view_func_unsafe
""".split())

TORCH = frozenset("""
Generator Size Tensor abs abs_ absolute acos acos_ acosh acosh_ adaptive_avg_pool1d adaptive_max_pool1d add
addbmm addcdiv addcmul addmm addmv addmv_ addr affine_grid_generator alias_copy all allclose alpha_dropout
alpha_dropout_ amax amin aminmax angle any arange arccos arccos_ arccosh arccosh_ arcsin arcsin_ arcsinh
arcsinh_ arctan arctan2 arctan_ arctanh arctanh_ argmax argmin argsort argwhere as_tensor asin asin_ asinh
asinh_ atan atan2 atan_ atanh atanh_ atleast_1d atleast_2d atleast_3d avg_pool1d baddbmm bartlett_window
batch_norm batch_norm_elemt batch_norm_gather_stats batch_norm_gather_stats_with_counts batch_norm_stats
batch_norm_update_stats bernoulli bfloat16 bilinear binary_cross_entropy_with_logits bincount binomial bit
bits16 bits1x8 bits2x4 bits4x2 bits8 bitwise_and bitwise_left_shift bitwise_not bitwise_or bitwise_right_shift
bitwise_xor blackman_window block_diag bmm bool broadcast_shapes broadcast_tensors broadcast_to bucketize
cartesian_prod cat cdist cdouble ceil ceil_ celu celu_ cfloat chain_matmul chalf channel_shuffle channels_last
channels_last_3d cholesky cholesky_inverse cholesky_solve chunk clamp clamp_ clamp_max clamp_max_ clamp_min
clamp_min_ clip clip_ clone column_stack combinations complex complex128 complex32 complex64 concat
concatenate conj conj_physical conj_physical_ constant_pad_nd contiguous_format conv1d conv2d conv3d conv_tbc
conv_transpose1d conv_transpose2d conv_transpose3d convolution copysign corrcoef cos cos_ cosh cosh_
cosine_embedding_loss cosine_similarity count_nonzero cov cross ctc_loss cummax cummin cumprod cumsum
cumulative_trapezoid deg2rad deg2rad_ det detach detach_ detach_copy device diag diag_embed diagflat diagonal
diagonal_copy diagonal_scatter diff digamma dist div divide dot double dropout dropout_ dsplit dstack dtype e
einsum embedding embedding_bag embedding_renorm_ empty empty_like empty_permuted empty_strided eq equal erf
erf_ erfc erfc_ erfinv exp exp2 exp2_ exp_ expand_copy expm1 expm1_ eye feature_alpha_dropout
feature_alpha_dropout_ feature_dropout feature_dropout_ fft fill fill_ finfo fix fix_ flatten flip fliplr
float float16 float32 float4_e2m1fn_x2 float64 float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz
float8_e8m0fnu float_power floor floor_ floor_divide fmax fmin fmod frac frac_ frexp frobenius_norm from_numpy
full full_like gather gcd gcd_ ge geqrf ger get_default_device get_default_dtype greater greater_equal
grid_sampler grid_sampler_2d grid_sampler_3d group_norm gt half hamming_window hann_window hardshrink
heaviside hinge_embedding_loss histc histogram histogramdd hsplit hstack hypot i0 i0_ igamma igammac iinfo
index_add index_copy index_fill index_put index_put_ index_reduce index_select indices_copy inf inference_mode
initial_seed inner instance_norm int int1 int16 int2 int3 int32 int4 int5 int6 int64 int7 int8 inverse
is_complex is_conj is_floating_point is_inference_mode_enabled is_neg is_nonzero is_same_size is_signed
is_tensor isclose isfinite isin isinf isnan isneginf isposinf isreal istft jagged kaiser_window kl_div kron
kthvalue layer_norm layout lcm lcm_ ldexp ldexp_ le legacy_contiguous_format lerp less less_equal lgamma
linalg linspace log log10 log10_ log1p log1p_ log2 log2_ log_ log_softmax logaddexp logaddexp2 logcumsumexp
logdet logical_and logical_not logical_or logical_xor logit logit_ logspace logsumexp long lt lu_solve
manual_seed margin_ranking_loss masked_fill masked_scatter masked_select matmul matrix_exp matrix_power max
max_pool1d max_pool1d_with_indices max_pool2d max_pool3d maximum mean median memory_format meshgrid min
minimum mm mode moveaxis movedim msort mul multinomial multiply mv mvlgamma nan nan_to_num nan_to_num_ nanmean
nanmedian nanquantile nansum narrow narrow_copy native_batch_norm native_channel_shuffle native_dropout
native_group_norm native_layer_norm native_norm ne neg neg_ negative negative_ newaxis nextafter nn no_grad
nonzero nonzero_static norm norm_except_dim normal not_equal nuclear_norm numel ones ones_like orgqr ormqr
outer pairwise_distance pdist per_channel_affine per_channel_symmetric per_tensor_affine per_tensor_symmetric
permute permute_copy pi pinverse pixel_shuffle pixel_unshuffle poisson poisson_nll_loss polar polygamma
positive pow prelu preserve_format prod promote_types put qint32 qint8 qr quantile quint2x4 quint4x2 quint8
rad2deg rad2deg_ rand rand_like randint randint_like randn randn_like randperm range ravel reciprocal
reciprocal_ relu relu_ remainder renorm repeat_interleave reshape resolve_conj resolve_neg result_type
rms_norm roll rot90 round round_ row_stack rrelu rrelu_ rsqrt rsqrt_ rsub scalar_tensor scatter scatter_add
scatter_reduce searchsorted select select_copy select_scatter selu selu_ set_printoptions sgn short sigmoid
sigmoid_ sign signbit sin sin_ sinc sinc_ sinh sinh_ slice_copy slice_inverse slice_scatter slogdet softmax
sort special split split_copy split_with_sizes split_with_sizes_copy sqrt sqrt_ square square_ squeeze
squeeze_copy stack std std_mean stft strided sub subtract sum svd swapaxes swapdims t t_copy take
take_along_dim tan tan_ tanh tanh_ tensor tensor_split tensordot threshold threshold_ tile topk trace
transpose transpose_copy trapezoid trapz triangular_solve tril tril_indices triplet_margin_loss triu
triu_indices true_divide trunc trunc_ uint1 uint16 uint2 uint3 uint32 uint4 uint5 uint6 uint64 uint7 uint8
unbind unbind_copy unflatten unfold_copy unique unique_consecutive unravel_index unsqueeze unsqueeze_copy
values_copy vander var var_mean vdot view_as_complex view_as_complex_copy view_as_real view_as_real_copy
view_copy vsplit vstack where xlogy xlogy_ zero_ zeros zeros_like
""".split())

FUNCTIONAL = frozenset("""
Tensor adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d
adaptive_max_pool1d_with_indices adaptive_max_pool2d adaptive_max_pool2d_with_indices adaptive_max_pool3d
adaptive_max_pool3d_with_indices affine_grid alpha_dropout avg_pool1d avg_pool2d avg_pool3d batch_norm
bilinear binary_cross_entropy binary_cross_entropy_with_logits celu celu_ channel_shuffle conv1d conv2d conv3d
conv_tbc conv_transpose1d conv_transpose2d conv_transpose3d cosine_embedding_loss cosine_similarity
cross_entropy ctc_loss dropout dropout1d dropout2d dropout3d elu elu_ embedding embedding_bag
feature_alpha_dropout fold fractional_max_pool2d fractional_max_pool2d_with_indices fractional_max_pool3d
fractional_max_pool3d_with_indices gaussian_nll_loss gelu glu grid_sample group_norm grouped_mm gumbel_softmax
hardshrink hardsigmoid hardswish hardtanh hardtanh_ hinge_embedding_loss huber_loss instance_norm interpolate
kl_div l1_loss layer_norm leaky_relu leaky_relu_ linear linear_cross_entropy local_response_norm log_softmax
logsigmoid lp_pool1d lp_pool2d lp_pool3d margin_ranking_loss max_pool1d max_pool1d_with_indices max_pool2d
max_pool2d_with_indices max_pool3d max_pool3d_with_indices max_unpool1d max_unpool2d max_unpool3d mish
mse_loss multi_head_attention_forward multi_margin_loss multilabel_margin_loss multilabel_soft_margin_loss
native_channel_shuffle nll_loss normalize one_hot pad pairwise_distance pdist pixel_shuffle pixel_unshuffle
poisson_nll_loss prelu relu relu6 relu_ rms_norm rrelu rrelu_ scaled_dot_product_attention scaled_grouped_mm
scaled_mm selu selu_ sigmoid silu smooth_l1_loss soft_margin_loss softmax softmin softplus softshrink softsign
tanh tanhshrink threshold threshold_ triplet_margin_loss triplet_margin_with_distance_loss unfold upsample
upsample_bilinear upsample_nearest
""".split())

LINALG = frozenset("""
LinAlgError cholesky cholesky_ex common_notes cross det diagonal eig eigh eigvals eigvalsh householder_product
inv inv_ex ldl_factor ldl_factor_ex ldl_solve lstsq lu lu_factor lu_factor_ex lu_solve matmul matrix_exp
matrix_norm matrix_power matrix_rank multi_dot norm pinv qr slogdet solve solve_ex solve_triangular svd
svdvals tensorinv tensorsolve vander vecdot vector_norm
""".split())

SPECIAL = frozenset("""
Tensor airy_ai bessel_j0 bessel_j1 bessel_y0 bessel_y1 chebyshev_polynomial_t chebyshev_polynomial_u
chebyshev_polynomial_v chebyshev_polynomial_w common_args digamma entr erf erfc erfcx erfinv exp2 expit expm1
gammainc gammaincc gammaln hermite_polynomial_h hermite_polynomial_he i0 i0e i1 i1e laguerre_polynomial_l
legendre_polynomial_p log1p log_ndtr log_softmax logit logsumexp modified_bessel_i0 modified_bessel_i1
modified_bessel_k0 modified_bessel_k1 multi_dim_common multigammaln ndtr ndtri polygamma psi round
scaled_modified_bessel_k0 scaled_modified_bessel_k1 shifted_chebyshev_polynomial_t
shifted_chebyshev_polynomial_u shifted_chebyshev_polynomial_v shifted_chebyshev_polynomial_w sinc softmax
spherical_bessel_j0 xlog1py zeta
""".split())

FFT = frozenset("""
common_args factory_common_args fft fft2 fftfreq fftn fftshift hfft hfft2 hfftn ifft ifft2 ifftn ifftshift
ihfft ihfft2 ihfftn irfft irfft2 irfftn rfft rfft2 rfftfreq rfftn
""".split())

MATH = frozenset("""
pi e inf nan acos acosh asin asinh atan atan2 atanh cbrt ceil comb copysign cos cosh degrees dist erf erfc exp exp2 expm1
fabs factorial floor fmod frexp fsum gamma gcd hypot isclose isfinite isinf isnan isqrt lcm ldexp lgamma log
log10 log1p log2 modf nextafter perm pow prod radians remainder sin sinh sqrt tan tanh tau trunc ulp
""".split())


# --- Python: builtins, dunders, the methods of its containers and strings, the modules -----------

_EXCEPTIONS = {n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
               and issubclass(getattr(builtins, n), BaseException)}
ALLOWED_BUILTINS = _EXCEPTIONS | set(
    "abs all any ascii bin bool bytes callable chr classmethod complex dict divmod enumerate filter float format "
    "frozenset hash hex id input int isinstance issubclass iter len list map max min next object oct ord pow print "
    "property range repr reversed round set slice sorted staticmethod str sum super tuple type zip "
    "None True False NotImplemented Ellipsis __name__ __debug__ __all__ __slots__ __doc__".split())
BUILTIN_NAMES = set(dir(builtins))
# Dunder attributes that are plain: super().__init__(), a function's name.
SAFE_DUNDER_ATTRS = {"__init__", "__name__", "__qualname__", "__doc__", "__version__", "__class__"}  # read only
# Dunder methods a student's class may define (operators, containers, printing); not attribute or torch hooks.
SAFE_DUNDER_DEFS = set(
    "__init__ __call__ __repr__ __str__ __len__ __iter__ __next__ __getitem__ __setitem__ __contains__ __eq__ "
    "__ne__ __lt__ __le__ __gt__ __ge__ __hash__ __bool__ __add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ "
    "__mul__ __rmul__ __imul__ __truediv__ __rtruediv__ __itruediv__ __matmul__ __rmatmul__ __pow__ __rpow__ "
    "__neg__ __pos__ __abs__ __enter__ __exit__ __post_init__".split())

def _dunder_name(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


PY_METHODS = set(
    "append extend insert pop remove reverse sort index count clear copy keys values items get update setdefault "
    "popitem add discard union intersection difference symmetric_difference issubset issuperset join split rsplit "
    "strip lstrip rstrip startswith endswith replace upper lower title capitalize ljust rjust center zfill "
    "splitlines partition rpartition removeprefix removesuffix isdigit isalpha isalnum isspace find rfind format "
    "encode decode real imag conjugate is_integer bit_length as_integer_ratio numerator denominator "
    "start stop step submit result is_alive eps tiny resolution bits smallest_normal write flush "
    "_asdict _replace _fields _make cache_clear cache_info".split())  # namedtuples, functools.lru_cache

NUMPY = set(
    "pi e inf nan newaxis sqrt exp log log2 log10 abs sum mean prod max min maximum minimum array asarray zeros "
    "ones arange linspace eye float64 float32 int64 int32 isclose allclose round floor ceil tanh sign square "
    "finfo dtype ndarray shape reshape transpose dot matmul float16 int8 uint8 bool_ absolute power argmax argmin "
    "clip where stack concatenate full full_like zeros_like ones_like empty diag outer einsum cumsum var std "
    "expand_dims squeeze isfinite isnan isinf exp2 log1p expm1 cbrt reciprocal multiply add subtract divide "
    "negative".split())
TORCH_NN = {"functional"}
# Modules that may be imported, and the attributes they give (None: only via `from m import name`, any public name).
MODULES = {
    "torch": TORCH, "torch.nn": TORCH_NN, "torch.nn.functional": FUNCTIONAL,
    "torch.linalg": LINALG, "torch.special": SPECIAL, "torch.fft": FFT,
    "math": MATH, "numpy": NUMPY, "__future__": {"annotations"},
    "typing": {"Any", "Optional", "Union", "Dict", "List", "Tuple", "Callable", "Sequence", "Iterable", "Mapping",
               "TYPE_CHECKING", "NamedTuple", "TypedDict", "Literal"},
    "dataclasses": {"dataclass", "field", "fields", "asdict", "astuple", "replace"},
    "functools": {"reduce", "partial", "lru_cache", "cache", "wraps", "cached_property", "total_ordering"},
    "itertools": {"product", "chain", "combinations", "permutations", "accumulate", "repeat", "count", "cycle",
                  "islice", "starmap", "zip_longest", "pairwise", "groupby", "tee", "compress", "takewhile",
                  "dropwhile", "filterfalse"},
    "collections": {"defaultdict", "OrderedDict", "namedtuple", "Counter", "deque"},
    "copy": {"copy", "deepcopy"}, "random": {"seed", "random", "randint", "choice", "shuffle", "sample", "uniform"},
    "statistics": {"mean", "median", "stdev", "variance", "fmean"},
    "fractions": {"Fraction"}, "time": {"time", "perf_counter", "monotonic"},
    # Threads (capped by the sandbox), without settrace/setprofile, which hand out frames.
    "threading": {"Thread", "Lock", "RLock", "Event", "Barrier", "Semaphore"},
    "sys": {"stderr", "stdout", "maxsize", "float_info", "version", "version_info"},  # a warning on stderr
    "warnings": {"warn"},
    "concurrent.futures": {"ThreadPoolExecutor", "as_completed", "wait"},
    "matplotlib": set(), "matplotlib.pyplot": set(),  # a lecture notebook's import cell; plotting never runs
}
SUBMODULES = {path.rsplit(".", 1)[1]: path for path in MODULES if "." in path}
TORCH_CLASSES = {"torch.Tensor": TENSOR}
DEFAULT_ALIASES = {"torch": "torch", "F": "torch.nn.functional"}  # what lecture notebooks get without importing
# Every name the general (unknown receiver) attribute check allows.
GENERAL = ((TENSOR | PY_METHODS | TORCH | FUNCTIONAL | LINALG | SPECIAL | FFT | MATH | NUMPY)
           - {"nn", "linalg", "special", "fft"})
# The interpreter's own objects (frames, generators, coroutines, code, tracebacks, classes) lead to every frame's
# locals and globals: their attribute names are never the submission's, whatever it defines.
_INTERNALS = (types.FrameType, types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType, types.CodeType,
              types.TracebackType, types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.ModuleType,
              types.CellType, type)
INTERPRETER_NAMES = {name for kind in _INTERNALS for name in dir(kind) if not _dunder_name(name)} - PY_METHODS \
    - {"send", "throw", "close", "asend", "athrow", "aclose"}  # a generator's plain methods: a student's class may have them
