function dx = avg_pool_back_ref(dout, inputSize, HH, WW, S, P)
%AVG_POOL_BACK_REF Backward pass of avg_pool_ref, the seed's way.
%   DX = AVG_POOL_BACK_REF(DOUT, INPUTSIZE, HH, WW, S, P) with DOUT the
%   H' x W' x C x N gradient of avg_pool_ref(INPUT, HH, WW, S, P) (or a
%   struct whose field 'input' holds it) and INPUTSIZE = size(INPUT) (average
%   pooling is linear: only the size is needed).  Every window spreads
%   DOUT / (HH*WW) over its taps and im2col_back_ref(..., P, H, W) sums the
%   windows back (padding and overhang taps pass theirs to nothing).  DX is
%   H x W x C x N.
%
%   See DEVIATIONS.md.  convcore.matlab.avg_pool_backward is the Python side
%   (which takes the input array too).
  if nargin < 6
    P = 0;
  end
  if nargin < 5
    S = [];
  end
  if isstruct(dout)
    dout = dout.input;
  end
  sz = [double(inputSize(:)') 1 1];
  H = sz(1); W = sz(2); C = sz(3); N = sz(4);
  [sy, sx, pt, pb, pl, pr, H_prime, W_prime] = ...
      pool_windows('avg_pool_back_ref', H, W, HH, WW, S, P);
  check_pool_dout('avg_pool_back_ref', dout, [H_prime W_prime C N]);
  K = HH * WW;
  L = H_prime * W_prime;
  dx = zeros([H W C N], class(dout));
  for n = 1:N
    d = reshape_row_major(dout(:,:,:,n), [L C])';           % C x L
    dcols = repmat(reshape(d, [1 C L]) / K, [K 1 1]);       % K x C x L
    dx(:,:,:,n) = im2col_back_ref(reshape(dcols, [K*C, L])', H_prime, W_prime, [sy sx], ...
                                  HH, WW, C, [pt pb pl pr], H, W);
  end
end
