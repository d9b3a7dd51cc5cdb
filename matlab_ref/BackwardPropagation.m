function gradient = BackwardPropagation(obj, dout)
%BACKWARDPROPAGATION The seed's layer method: backward pass from the cache.
%   GRADIENT = BACKWARDPROPAGATION(OBJ, DOUT) with OBJ as returned by
%   ForwardPropagation and DOUT the next layer's gradient struct (field
%   'input') or the H' x W' x F x N array itself.  GRADIENT has fields
%   input, weight and bias; see backward_propagation.
  if ~isfield(obj, 'previousInput')
    error('BackwardPropagation: call ForwardPropagation first (no cached input)');
  end
  gradient = backward_propagation(dout, obj.previousInput, obj.weights, obj.biases, ...
                                  obj.m_stride, obj.m_padding);
end
