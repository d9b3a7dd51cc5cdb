function img_grad = im2col_back_ref(dout, dout_H, dout_W, S, HH, WW, C, P, H, W)
%IM2COL_BACK_REF Backpropagation of im2col_ref: sum the patches back.
%   IMG_GRAD = IM2COL_BACK_REF(DOUT, DOUT_H, DOUT_W, S, HH, WW, C) takes the
%   (DOUT_H*DOUT_W) x (HH*WW*C) gradient of im2col_ref's output, transposed
%   (one row per window, in im2col_ref's window order; each row in patch(:)
%   order), and adds every row back onto the window it came from.  Where
%   windows overlap the gradients are summed.  The result is the gradient of
%   the padded image region the windows cover, of size
%   ((DOUT_H-1)*SY + HH) x ((DOUT_W-1)*SX + WW) x C, as in the seed.
%
%   IMG_GRAD = IM2COL_BACK_REF(..., P, H, W) also takes the padding P (a
%   scalar, [PY PX] or [T B L R]) and the unpadded image size H x W, and
%   returns the H x W x C gradient of the unpadded image: rows and columns
%   that no window reached (dropped by the floor) get zero, the padding and
%   any overhang (pooling's ceil) are cut off.  With these arguments it is
%   the exact adjoint of IM2COL_REF(IMG, HH, WW, S, P, ISCONV).
%
%   See DEVIATIONS.md for every difference from the seed.
  if nargin < 8 || isempty(P)
    P = 0;
  end
  [sy, sx, pt, pb, pl, pr] = conv_options(S, P);
  if nargin ~= 7 && nargin ~= 10
    error('im2col_back_ref: pass 7 arguments, or 10 (with P, H, W)');
  end
  if nargin == 7 && any([pt pb pl pr] ~= 0)
    error('im2col_back_ref: P needs the image size H, W');
  end
  if ~isequal(size(dout), [dout_H*dout_W, HH*WW*C])
    error('im2col_back_ref: dout must be %dx%d, got %s', dout_H*dout_W, HH*WW*C, ...
          mat2str(size(dout)));
  end
  coveredHeight = (dout_H - 1) * sy + HH;
  coveredWidth = (dout_W - 1) * sx + WW;
  if nargin == 10
    paddedHeight = H + pt + pb;
    paddedWidth = W + pl + pr;
    % dout_H x dout_W must be im2col_ref's size: floor (conv) or ceil (pooling).
    okH = any(dout_H == [floor((paddedHeight - HH) / sy), ceil((paddedHeight - HH) / sy)] + 1);
    okW = any(dout_W == [floor((paddedWidth - WW) / sx), ceil((paddedWidth - WW) / sx)] + 1);
    if ~okH || ~okW || dout_H < 1 || dout_W < 1
      error('im2col_back_ref: %dx%d windows do not match a %dx%d image with this stride and pad', ...
            dout_H, dout_W, H, W);
    end
    frameHeight = max(coveredHeight, paddedHeight);
    frameWidth = max(coveredWidth, paddedWidth);
  else
    frameHeight = coveredHeight;
    frameWidth = coveredWidth;
  end

  img_grad = zeros(frameHeight, frameWidth, C, class(dout));
  for ii = 1:(dout_H * dout_W)
    % Undo patch(:): column-major, as im2col_ref flattened it.
    patch = reshape(dout(ii, :), [HH WW C]);
    h_start = floor((ii - 1) / dout_W) * sy + 1;
    w_start = mod(ii - 1, dout_W) * sx + 1;
    rows = h_start:h_start+HH-1;
    cols = w_start:w_start+WW-1;
    img_grad(rows, cols, :) = img_grad(rows, cols, :) + patch;
  end
  if nargin == 10
    img_grad = img_grad(pt+1:pt+H, pl+1:pl+W, :);
  end
end
