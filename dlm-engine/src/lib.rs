//! dlm-engine: the lock manager (work in progress: see the engine issue).
