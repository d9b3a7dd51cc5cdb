function out = reshape_row_major(x, shape)
%RESHAPE_ROW_MAJOR (alternative reading) Column-major read, row-major write.
%   NOT SEED CODE.  The seed never defines reshape_row_major.  The fixed
%   ../../reshape_row_major.m is NumPy's row-major reshape (read and write in
%   row-major order).  This file is the other plausible reading: take X's
%   elements in MATLAB's column-major order and fill SHAPE in row-major
%   order.  show_seed_bugs.m runs the literal code with both readings to
%   show that neither makes all of the seed's calls right.
  shape = double(shape(:)');
  if numel(shape) == 1
    shape = [shape 1];
  end
  out = permute(reshape(x, fliplr(shape)), numel(shape):-1:1);
end
