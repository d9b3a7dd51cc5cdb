function run_cases(in_dir, out_dir)
%RUN_CASES Run the fixed MATLAB reference on every case file in IN_DIR.
%   RUN_CASES(IN_DIR, OUT_DIR) loads each IN_DIR/*.mat (written by
%   make_fixtures.py or tests/test_matlab.py), runs im2col_ref,
%   im2col_back_ref, reshape_row_major, forward_propagation and
%   backward_propagation on it, and saves inputs and results to
%   OUT_DIR/<same name>.mat in MATLAB v7 format (compressed; readable by
%   scipy.io.loadmat).
%
%   Input variables (MATLAB layout; trailing singleton dimensions may be
%   dropped):
%     case_id   name of the case
%     x         H x W x C x N input            size_x = [H W C N]
%     w         HH x WW x C x F filters        size_w = [HH WW C F]
%     b         F x 1 bias, or [] (no bias)
%     stride    scalar or [SY SX]
%     pad       scalar, [PY PX] or [T B L R]
%     is_conv   1 (convolution, floor) or 0 (pooling, ceil) for im2col_ref
%     dcols     L x K x N gradients for im2col_back_ref (L = H'*W', K = HH*WW*C)
%     dout      H' x W' x F x N gradient for backward_propagation
%     rrm_shape a shape for reshape_row_major(x, rrm_shape)
%     rrm_infer (optional) the position in rrm_shape to infer: passed as []
%     dpool     (pooling cases only) H' x W' x C x N gradient for the pooling
%               backward passes (H' x W' the ceil windows of im2col_ref)
%   Results:
%     cols          K x L x N   im2col_ref(x(:,:,:,n), HH, WW, stride, pad, is_conv)
%     dimg_covered  Hc x Wc x C x N   im2col_back_ref(dcols(:,:,n), H', W', stride, HH, WW, C)
%     dimg          H x W x C x N     im2col_back_ref(..., pad, H, W)
%     x_rrm         reshape_row_major(x, rrm_shape)
%     x_rrm_infer   reshape_row_major(x, d1, ..., [], ...): rrm_shape's sizes as
%                   separate arguments, the one at rrm_infer as [] (inferred)
%     y             forward_propagation(x, w, b, stride, pad)   (H' x W' x F x N, floor)
%     dx, dw, db    backward_propagation(dout, x, w, b, stride, pad)
%     db_row        the bias gradient for the bias given as a 1 x F row (1 x F;
%                   only when b is not [])
%     pool_max, pool_avg        (with dpool) max_pool_ref / avg_pool_ref(x, HH, WW, stride, pad)
%     dx_pool_max, dx_pool_avg  their backward passes for dpool
%     warned_im2col, warned_forward, warned_backward, warned_pool
%                   1 where the call warned 'convcore:outputSize', else 0
%   y, dx, dw and db are always convolutions (floor sizes); is_conv only
%   affects cols, dimg_covered and dimg.
  files = dir(fullfile(in_dir, '*.mat'));
  if isempty(files)
    error('run_cases: no .mat files in %s', in_dir);
  end
  for k = 1:numel(files)
    s = load(fullfile(in_dir, files(k).name));
    r = run_one(s);
    r.octave_version = version();
    save('-v7', fullfile(out_dir, files(k).name), '-struct', 'r');
  end
end

function w = warned()
%WARNED Whether the last warning since lastwarn('') was the output-size warning.
  [~, id] = lastwarn();
  w = double(strcmp(id, 'convcore:outputSize'));
  lastwarn('');
end

function r = run_one(s)
  r = s;
  sx = double(s.size_x);
  sw = double(s.size_w);
  H = sx(1); W = sx(2); C = sx(3); N = sx(4);
  HH = sw(1); WW = sw(2); F = sw(4);
  x = reshape(s.x, sx);
  w = reshape(s.w, sw);
  [sy, sxs, pt, pb, pl, pr] = conv_options(s.stride, s.pad);
  P = [pt pb pl pr];
  S = [sy sxs];
  K = HH * WW * C;
  lastwarn('');
  first = im2col_ref(x(:,:,:,1), HH, WW, S, P, s.is_conv);
  r.warned_im2col = warned();
  L = size(first, 2);
  % output size of im2col_ref (floor or ceil)
  if s.is_conv
    Ho = floor((H + pt + pb - HH) / sy) + 1;
    Wo = floor((W + pl + pr - WW) / sxs) + 1;
  else
    Ho = ceil((H + pt + pb - HH) / sy) + 1;
    Wo = ceil((W + pl + pr - WW) / sxs) + 1;
  end
  if L ~= Ho * Wo
    error('run_cases: %s: im2col_ref returned %d columns, expected %d', s.case_id, L, Ho * Wo);
  end
  dcols = reshape(s.dcols, [L K N]);
  r.cols = zeros(K, L, N);
  r.dimg_covered = zeros((Ho - 1) * sy + HH, (Wo - 1) * sxs + WW, C, N);
  r.dimg = zeros(H, W, C, N);
  for n = 1:N
    r.cols(:, :, n) = im2col_ref(x(:,:,:,n), HH, WW, S, P, s.is_conv);
    r.dimg_covered(:, :, :, n) = im2col_back_ref(dcols(:,:,n), Ho, Wo, S, HH, WW, C);
    r.dimg(:, :, :, n) = im2col_back_ref(dcols(:,:,n), Ho, Wo, S, HH, WW, C, P, H, W);
  end
  r.x_rrm = reshape_row_major(x, s.rrm_shape);
  if isfield(s, 'rrm_infer')
    % The same shape as separate sizes, the one at rrm_infer given as []
    dims = num2cell(double(s.rrm_shape(:)'));
    dims{s.rrm_infer} = [];
    r.x_rrm_infer = reshape_row_major(x, dims{:});
  end
  lastwarn('');
  r.y = forward_propagation(x, w, s.b, S, P);
  r.warned_forward = warned();
  g = backward_propagation(s.dout, x, w, s.b, S, P);
  r.warned_backward = warned();
  r.dx = g.input;
  r.dw = g.weight;
  r.db = g.bias;
  if ~isempty(s.b)
    % The bias as a 1 x F row: the same activations, the gradient a 1 x F row too
    b_row = reshape(s.b, 1, []);
    y_row = forward_propagation(x, w, b_row, S, P);
    if ~isequal(y_row, r.y)
      error('run_cases: %s: a 1 x F bias changes the forward output', s.case_id);
    end
    g_row = backward_propagation(s.dout, x, w, b_row, S, P);
    r.db_row = g_row.bias;
  end
  if isfield(s, 'dpool')
    % Pooling on im2col_ref's pooling windows (kernel HH x WW, the case's stride and pad)
    dpool = reshape(s.dpool, [Ho Wo C N]);
    lastwarn('');
    r.pool_max = max_pool_ref(x, HH, WW, S, P);
    r.warned_pool = warned();
    r.pool_avg = avg_pool_ref(x, HH, WW, S, P);
    r.dx_pool_max = max_pool_back_ref(dpool, x, HH, WW, S, P);
    r.dx_pool_avg = avg_pool_back_ref(dpool, size(x), HH, WW, S, P);
    % max_pool_ref is max over im2col_ref's columns, avg_pool_ref their mean
    cols = reshape(r.cols(:, :, 1), [HH*WW, C, L]);
    if ~isequaln(reshape(max(cols, [], 1), [C L])', reshape_row_major(r.pool_max(:,:,:,1), [L C]))
      error('run_cases: %s: max_pool_ref is not the maximum of im2col_ref''s columns', s.case_id);
    end
  end
  if size(r.y, 1) ~= floor((H + pt + pb - HH) / sy) + 1 || size(r.y, 3) ~= F
    error('run_cases: %s: forward output has size %s', s.case_id, mat2str(size(r.y)));
  end
end
