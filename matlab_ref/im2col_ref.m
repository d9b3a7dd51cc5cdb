function img_matrix = im2col_ref(inputImg, k_height, k_width, S, P, isConv)
%IM2COL_REF Unfold every receptive field of one image into a column.
%   IMG_MATRIX = IM2COL_REF(IMG, K_HEIGHT, K_WIDTH, S, P, ISCONV) takes an
%   image IMG of size H x W x C and returns a (K_HEIGHT*K_WIDTH*C) x (H'*W')
%   matrix.  Column number (r-1)*W' + c holds the window whose top-left
%   corner is output position (r, c), flattened as MATLAB's patch(:)
%   (row index fastest, then column, then channel).  Windows are visited
%   with the row outer and the column inner, as in the seed's loop.
%
%   S is a scalar or [SY SX]; P is a scalar, [PY PX] or [T B L R].  The
%   image is zero-padded (no padarray: no toolbox needed).
%
%   ISCONV = 1 (default, convolution): H' = floor((H+T+B-K_HEIGHT)/SY) + 1.
%   ISCONV = 0 (pooling): H' = ceil((H+T+B-K_HEIGHT)/SY) + 1, and windows
%   that hang over the bottom or right edge read zeros there.
%
%   When (H+T+B-K_HEIGHT)/SY + 1 (or the same across) is not an integer it
%   warns, as the seed does, with the identifier 'convcore:outputSize'
%   (check_output_size).
%
%   See DEVIATIONS.md for every difference from the seed.
  if nargin < 6 || isempty(isConv)
    isConv = 1;
  end
  if nargin < 5
    P = 0;
  end
  if ndims(inputImg) > 3
    error('im2col_ref: inputImg must be H x W x C (one image), got %d dimensions', ...
          ndims(inputImg));
  end
  [sy, sx, pt, pb, pl, pr] = conv_options(S, P);
  [imgHeight, imgWidth, imgChannels] = size(inputImg);
  paddedHeight = imgHeight + pt + pb;
  paddedWidth = imgWidth + pl + pr;

  if isConv
    % Convolution: windows that do not fit are dropped (floor).
    newImgHeight = floor((paddedHeight - k_height) / sy) + 1;
    newImgWidth = floor((paddedWidth - k_width) / sx) + 1;
  else
    % Pooling: the last window may hang over the edge (ceil).
    newImgHeight = ceil((paddedHeight - k_height) / sy) + 1;
    newImgWidth = ceil((paddedWidth - k_width) / sx) + 1;
  end
  if newImgHeight < 1 || newImgWidth < 1
    error('im2col_ref: a %dx%d kernel does not fit the %dx%d padded image', ...
          k_height, k_width, paddedHeight, paddedWidth);
  end
  % The seed's warning, when (H+T+B-HH)/S + 1 is not an integer
  check_output_size('im2col_ref', imgHeight, imgWidth, k_height, k_width, sy, sx, ...
                    pt, pb, pl, pr, isConv, newImgHeight, newImgWidth);

  % Zero frame: the padding, plus room for windows hanging over the edge.
  frameHeight = max(paddedHeight, (newImgHeight - 1) * sy + k_height);
  frameWidth = max(paddedWidth, (newImgWidth - 1) * sx + k_width);
  padded = zeros(frameHeight, frameWidth, imgChannels, class(inputImg));
  padded(pt+1:pt+imgHeight, pl+1:pl+imgWidth, :) = inputImg;

  img_matrix = zeros(imgChannels * k_height * k_width, ...
                     newImgHeight * newImgWidth, class(inputImg));
  cont = 1;
  for outRow = 1:newImgHeight
    r = (outRow - 1) * sy + 1;
    for outCol = 1:newImgWidth
      c = (outCol - 1) * sx + 1;
      patch = padded(r:r+k_height-1, c:c+k_width-1, :);
      img_matrix(:, cont) = patch(:);
      cont = cont + 1;
    end
  end
end
