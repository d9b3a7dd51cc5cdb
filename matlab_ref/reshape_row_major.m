function out = reshape_row_major(x, shape)
%RESHAPE_ROW_MAJOR Reshape in row-major (C, NumPy) element order.
%   OUT = RESHAPE_ROW_MAJOR(X, SHAPE) returns an array of size SHAPE whose
%   elements, read in row-major order (last index fastest), are the elements
%   of X read in row-major order.  For an array indexed the same way in both
%   languages this is NumPy's x.reshape(shape), and convcore.matlab's
%   reshape_row_major.  MATLAB's own RESHAPE reads and writes in
%   column-major order (first index fastest).
%
%   The seed calls this function but never defines it; see DEVIATIONS.md.
  shape = double(shape(:)');
  if numel(shape) == 1
    shape = [shape 1];
  end
  if prod(shape) ~= numel(x)
    error('reshape_row_major: can''t reshape %d elements into [%s]', ...
          numel(x), num2str(shape));
  end
  nd = ndims(x);
  % Reversing the axes turns row-major order into MATLAB's column-major one.
  xt = permute(x, nd:-1:1);
  out = permute(reshape(xt, fliplr(shape)), numel(shape):-1:1);
end
