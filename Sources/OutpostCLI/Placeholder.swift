public enum OutpostCommandPlaceholder {}
